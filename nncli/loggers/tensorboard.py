"""The `tensorboard` logger: event files with each epoch's scalars per split (`loss/train`,
`accuracy/val`), the learning rate, the config as hparams and text, and the figures as
images. Registered without importing TensorBoard; its builder imports it."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

from pydantic import Field

from nncli.loggers.base import Checkpoint, Logger, loggers
from nncli.loggers.extras import ExtraParams
from nncli.loggers.links import link, read_links

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from nncli.engine.fit import FitResult
    from nncli.engine.prepare import Prepared
    from nncli.runs.folder import Run

SPLITS = ("train", "val", "test")
# the hparams plugin's status of each way a run ends (it has none for a stopped run; the
# `status` text says which)
STATUS = {
    "completed": "STATUS_SUCCESS",
    "interrupted": "STATUS_UNKNOWN",
    "failed": "STATUS_FAILURE",
    "diverged": "STATUS_FAILURE",
}


class TensorBoardParams(ExtraParams):
    """TensorBoard event files (pip install 'nncli[tensorboard]')."""

    library: ClassVar[str] = "tensorboard"
    extra: ClassVar[str] = "tensorboard"
    log_dir: str | None = Field(
        default=None,
        description="folder for the events, a subfolder per run (relative: to the working "
        "folder); default: the run folder itself",
    )


def tag(column: str) -> str:
    """The scalar's tag for a metrics.csv column: `val_accuracy` -> `accuracy/val`, so
    TensorBoard shows a metric's splits side by side; `lr` and `time_s` as they are."""
    split, _, metric = column.partition("_")
    return f"{metric}/{split}" if split in SPLITS and metric else column


class TensorBoardLogger(Logger):
    """One run's events in its log dir; a resumed run appends to the same log dir, its
    steps continuing after the checkpoint's epoch (later events of a killed run purged)."""

    def __init__(self, log_dir: str | None, folder: Path, record: bool = True) -> None:
        self.folder, self.record = folder, record  # record: the log dir in loggers.json
        linked = read_links(folder).get("tensorboard", {}).get("log_dir")
        self.continued = isinstance(linked, str)
        if isinstance(linked, str):  # as first chosen, from wherever the run resumes
            self.log_dir = Path(linked)
        else:
            self.log_dir = (Path(log_dir) / folder.name if log_dir else folder).absolute()
        self.writer: SummaryWriter | None = None
        self.step = 0

    # --- the Logger interface ---------------------------------------------------------

    def start(self, run: Run, p: Prepared, resumed_after: int) -> None:
        from nncli.config.spec import resolved
        from nncli.runs.record import read_metrics

        done = read_metrics(run.path) if resumed_after else []  # as the run folder kept them
        self.open(resolved(p.spec), p.columns(), done)

    def epoch(
        self, row: Mapping[str, float], checkpoint: Checkpoint, last: bool, best: bool
    ) -> None:
        self.scalars(row)

    def artifacts(self, paths: Sequence[Path]) -> None:
        import numpy as np
        from PIL import Image

        writer = self._writer()
        for path in paths:
            if path.suffix.lower() != ".png":
                continue
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            writer.add_image(f"plots/{path.stem}", pixels, self.step, dataformats="HWC")
        writer.flush()

    def finish(self, status: str, result: FitResult | None, error: str | None) -> None:
        writer = self._writer()
        writer.add_text("status", status + (f": {error}" if error else ""), self.step)
        _summary(writer, _session_end(status))
        writer.close()
        self.writer = None

    # --- what export-runs replays too ---------------------------------------------------

    def open(
        self,
        config: Mapping[str, Any],
        columns: Sequence[str],
        done: Sequence[Mapping[str, float]] = (),
    ) -> None:
        """Start writing the run's events, or continue them, with the rows of the epochs
        `done` (a resumed run's, as metrics.csv keeps them)."""
        from torch.utils.tensorboard import SummaryWriter

        # A continued run's earlier epochs are written again: TensorBoard drops every step
        # from 1 on that the earlier files hold (purge_step), so what a killed process
        # logged past its checkpoint goes, and an epoch interrupted before this logger
        # saw it is there
        self.writer = SummaryWriter(str(self.log_dir), purge_step=1 if self.continued else None)
        if not self.continued:
            if self.record:
                link(self.folder, "tensorboard", {"log_dir": str(self.log_dir)})
            self.continued = True
            _config(self.writer, config, columns)
        for row in done:
            self.scalars(row)
        self.writer.flush()

    def scalars(self, row: Mapping[str, float]) -> None:
        """One epoch's row, each column a scalar at the epoch's step."""
        writer = self._writer()
        self.step = int(row["epoch"])
        for column, value in row.items():
            if column != "epoch":
                writer.add_scalar(tag(column), value, self.step)
        writer.flush()  # a killed run keeps the epochs it logged

    def _writer(self) -> SummaryWriter:
        if self.writer is None:
            raise RuntimeError(f"the TensorBoard events in {self.log_dir} are not open")
        return self.writer


def _config(writer: SummaryWriter, config: Mapping[str, Any], columns: Sequence[str]) -> None:
    """The config as hparams (dotted keys, as `nncli compare` shows them; the scalar tags
    as their metrics) and as YAML text."""
    from torch.utils.tensorboard.summary import hparams

    from nncli.config import yamlio
    from nncli.runs.record import flatten

    plain = {
        key: value if isinstance(value, bool | int | float | str) else json.dumps(value)
        for key, value in flatten(dict(config)).items()
    }
    metrics = {tag(c): 0.0 for c in columns if c.partition("_")[0] in SPLITS}
    experiment, start, _ = cast("Any", hparams)(plain, metrics)
    _summary(writer, experiment)
    _summary(writer, start)
    text = yamlio.dump(dict(config))
    writer.add_text("config", "\n".join(f"    {line}" for line in text.splitlines()), 0)


def _summary(writer: SummaryWriter, summary: Any) -> None:
    """Write a summary protobuf as it is (the hparams plugin's are not scalars)."""
    cast("Any", writer)._get_file_writer().add_summary(summary)


def _session_end(status: str) -> Any:
    """The hparams plugin's summary that the session ended, and how."""
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.metadata import (
        PLUGIN_DATA_VERSION,
        PLUGIN_NAME,
        SESSION_END_INFO_TAG,
    )
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo

    end = SessionEndInfo(status=Status.Value(STATUS[status]), end_time_secs=time.time())
    content = HParamsPluginData(session_end_info=end, version=PLUGIN_DATA_VERSION)
    meta = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=content.SerializeToString()
        )
    )
    return Summary(value=[Summary.Value(tag=SESSION_END_INFO_TAG, metadata=meta)])


@loggers.register(
    "tensorboard",
    params=TensorBoardParams,
    positional="log_dir",
    imports=("torch.utils.tensorboard",),
)
def tensorboard(params: TensorBoardParams, run_folder: Path) -> Logger:
    """TensorBoard event files: scalars per epoch and split, the learning rate, the config
    as hparams, the figures as images (in the run folder, or a subfolder of log_dir)."""
    return TensorBoardLogger(params.log_dir, run_folder)
