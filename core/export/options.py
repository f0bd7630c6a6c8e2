"""An export's options: the run's export section with the user's choices (CLI flags, the wizard) applied."""

from __future__ import annotations

from pydantic import ValidationError

from tunedeck.core.config import ExportConfig
from tunedeck.core.errors import ConfigError
from tunedeck.core.jobs.runs import RunDir


def export_options(run: RunDir, *, checkpoint: str | None = None, quant: str | None = None, system: str | None = None,
                   merge_dtype: str | None = None, name: str | None = None) -> ExportConfig:
    """The run's export section with the user's choices applied, validated like a config file."""
    data = run.load_config().export.model_dump()
    given = {"checkpoint": checkpoint, "system_prompt": system, "merge_dtype": merge_dtype, "ollama_name": name,
             "quantizations": [q for q in quant.split(",") if q.strip()] if quant is not None else None}
    data.update({k: v for k, v in given.items() if v is not None})
    try:
        return ExportConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"] if not isinstance(p, int))
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"export.{field}: {message}", where="tunedeck export") from None
