"""``nuvom plugin status|test|scaffold``."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from rich.table import Table

from nuvom.cli.output import OutputFormat, console, fail, print_json

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
        console.print(f"[red]plugins file:[/] {manager.file_error}", highlight=False)
    if not rows:
        console.print(f"no plugins configured ({where})", highlight=False)
        return 0
    table = Table(title=f"plugins from {where}", title_justify="left")
    for column in ("name", "state", "version", "provides", "source", "spec"):
        table.add_column(column, overflow="fold")
    for row in rows:
        state = row["state"]
        shown = f"[{STATE_STYLE.get(state, 'white')}]{state}[/]"
        if row["error"]:
            shown += f": {row['error']}"
        table.add_row(
            row["name"],
            shown,
            row["version"] or "-",
            ", ".join(row["provides"]) or "-",
            row["source"],
            row["spec"],
        )
    console.print(table)
    return 0


def run_plugin_test(spec: str, fmt: OutputFormat) -> int:
    from nuvom.plugins.testing import check_plugin

    report = check_plugin(spec)
    if fmt is OutputFormat.json:
        print_json(report.describe())
        return 0 if report.ok else 1
    for step in report.steps:
        style = STEP_STYLE.get(step.status, "white")
        detail = f"  {step.detail}" if step.detail else ""
        console.print(f"[{style}]{step.status:>7}[/]  {step.name}{detail}", highlight=False)
    failed = sum(1 for step in report.steps if not step.ok)
    if failed:
        console.print(f"[red]{spec}: {failed} check(s) failed[/]", highlight=False)
        return 1
    console.print(f"[green]{spec}: every check passed[/]", highlight=False)
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
    console.print(f"wrote {plugin_path} and {test_path}", highlight=False)
    console.print(f"check it:  nuvom plugin test {module}:{camel}Plugin", highlight=False)
    console.print(
        f'enable it: add {kind} = ["{module}:{camel}Plugin"] under [plugins] in .nuvom_plugins.toml',
        highlight=False,
    )
