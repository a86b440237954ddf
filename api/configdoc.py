"""The configuration reference, generated from the config model (docs/configuration.md)."""

from __future__ import annotations

from api.config import Config
from vault.settings import describe


def config_reference() -> str:
    """Markdown table of every key with type, default, bounds and meaning."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the configuration model by `evault config-reference`; a test fails when",
        "this file and the model differ. Unknown keys are refused at load. Any key of the single",
        "sections can be overridden by `EVAULT_<SECTION>_<KEY>`, e.g. `EVAULT_DATABASE_DSN`.",
        "",
        "| key | type | default | bounds | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for d in describe(Config):
        default = d.default.replace("|", "\\|")
        doc = d.doc.replace("|", "\\|")
        lines.append(f"| `{d.key}` | {d.type} | `{default}` | {d.bounds} | {doc} |")
    return "\n".join(lines) + "\n"
