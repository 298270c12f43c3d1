"""``nuvom config``: the effective settings and where each came from."""

from __future__ import annotations

from rich.table import Table

from nuvom.cli.output import OutputFormat, console, print_json


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
    table = Table(title="nuvom settings")
    table.add_column("variable", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("from")
    for name, value in values.items():
        source = sources[name]
        style = "dim" if source == "default" else "bold"
        table.add_row(env_name(name), "" if value is None else str(value), f"[{style}]{source}[/]")
    console.print(table)
