"""``nuvom config``: the effective settings and where each came from."""

from __future__ import annotations

from rich.markup import escape

from nuvom.cli.output import Col, OutputFormat, console, fit_table, print_json

COLUMNS = (Col("variable"), Col("value", fit="wrap"), Col("from"))


def show_config(fmt: OutputFormat) -> None:
    from nuvom.config import env_name, setting_sources
    from nuvom.runtime import current

    settings = current().settings
    sources = setting_sources(settings)
    values = settings.model_dump(mode="json")
    if fmt is OutputFormat.json:
        print_json(
            {
                name: {"variable": env_name(name), "value": values[name], "source": sources[name]}
                for name in values
            }
        )
        return
    rows = []
    for name, value in values.items():
        source = sources[name]
        style = "dim" if source == "default" else "bold"
        shown = "" if value is None else escape(str(value))
        rows.append((env_name(name), shown, f"[{style}]{escape(source)}[/]"))
    console.print(fit_table("nuvom settings", COLUMNS, rows))
