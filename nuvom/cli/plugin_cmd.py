"""``nuvom plugin status|test|scaffold``."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from rich.markup import escape

from nuvom.cli.output import Col, OutputFormat, console, fail, fit_table, print_json

STATE_STYLE = {"loaded": "green", "started": "green", "failed": "red"}
STEP_STYLE = {"passed": "green", "failed": "red", "skipped": "yellow"}


def show_status(fmt: OutputFormat) -> int:
    from nuvom.plugins.loader import PluginManager
    from nuvom.runtime import current

    manager = PluginManager(current().settings, announce=False)
    records = manager.load()
    rows = [record.describe() for record in records]
    if fmt is OutputFormat.json:
        print_json({"plugins_file_error": manager.file_error, "plugins": rows})
        return 0
    settings = manager.settings
    where = f"{settings.plugins_file}" + (
        ", entry points" if settings.plugins_autoload else " (entry points off)"
    )
    if manager.file_error:
        console.print(f"[red]plugins file:[/] {escape(manager.file_error)}", highlight=False)
    if not rows:
        console.print(f"no plugins configured ({where})", markup=False, highlight=False)
        return 0
    columns = [
        Col("name", fit="cut"),
        Col("state"),
        Col("version", drop=3),
        Col("provides", fit="cut", drop=2),
        Col("source", drop=4),
        Col("spec", fit="cut", drop=1),
    ]
    if any(row["error"] for row in rows):
        columns.append(Col("error", fit="wrap"))
    cells = [
        [
            escape(row["name"]),
            f"[{STATE_STYLE.get(row['state'], 'white')}]{escape(row['state'])}[/]",
            escape(row["version"] or "-"),
            escape(", ".join(row["provides"]) or "-"),
            escape(row["source"]),
            escape(row["spec"]),
            *([escape(row["error"] or "")] if len(columns) > 6 else []),
        ]
        for row in rows
    ]
    console.print(fit_table(f"plugins from {escape(where)}", columns, cells, title_justify="left"))
    return 0


def run_plugin_test(spec: str, fmt: OutputFormat) -> int:
    from nuvom.plugins.testing import check_plugin

    report = check_plugin(spec)
    if fmt is OutputFormat.json:
        print_json(report.describe())
        return 0 if report.ok else 1
    for step in report.steps:
        style = STEP_STYLE.get(step.status, "white")
        detail = f"  {escape(step.detail)}" if step.detail else ""
        console.print(
            f"[{style}]{escape(step.status):>7}[/]  {escape(step.name)}{detail}", highlight=False
        )
    failed = sum(1 for step in report.steps if not step.ok)
    if failed:
        console.print(f"[red]{escape(spec)}: {failed} check(s) failed[/]", highlight=False)
        return 1
    console.print(f"[green]{escape(spec)}: every check passed[/]", highlight=False)
    return 0


def module_name(name: str) -> str:
    module = re.sub(r"[^0-9a-zA-Z_]+", "_", name.strip()).strip("_").lower()
    if not module or module[0].isdigit() or keyword.iskeyword(module):
        raise fail(f"{name!r} cannot be a Python module name; use letters, digits and _", 2)
    return module


def scaffold(name: str, kind: str, directory: Path, force: bool) -> None:
    from nuvom.cli.plugin_templates import TEMPLATES, render

    if kind not in TEMPLATES:
        raise fail(f"--kind must be one of {', '.join(TEMPLATES)}, not {kind!r}", 2)
    module = module_name(name)
    camel = "".join(part.capitalize() for part in module.split("_"))
    plugin_text, test_text = render(kind, name, module, camel)
    plugin_path = directory / f"{module}.py"
    test_path = directory / f"test_{module}.py"
    existing = [str(p) for p in (plugin_path, test_path) if p.exists()]
    if existing and not force:
        raise fail(f"{', '.join(existing)} already exists (pass --force to overwrite)")
    directory.mkdir(parents=True, exist_ok=True)
    plugin_path.write_text(plugin_text, encoding="utf-8")
    test_path.write_text(test_text, encoding="utf-8")
    # Plain text: paths and the TOML table name "[plugins]" are not Rich markup.
    console.print(f"wrote {plugin_path} and {test_path}", markup=False, highlight=False)
    console.print(
        f"check it:  nuvom plugin test {module}:{camel}Plugin", markup=False, highlight=False
    )
    console.print(
        f'enable it: add {kind} = ["{module}:{camel}Plugin"] under [plugins] in .nuvom_plugins.toml',
        markup=False,
        highlight=False,
    )
