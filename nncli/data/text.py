"""`source: text`: a CSV's text column as token ids (`tokenizer: char|word`, cut or padded
to `max_length`), its vocabulary the tokens seen `min_count` times in the train split only
(`prepare` fits it; data/sequences.Tokens), and a label (or value) column as the target."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from nncli.data import (
    Dataset,
    FileParams,
    LossTarget,
    PathText,
    TargetKind,
    datasets,
    resolve_task,
    task_field,
)
from nncli.data.preprocess import lines
from nncli.data.sequences import Tokenizer, Tokens
from nncli.errors import NncliError
from nncli.inputs import read_csv

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import NDArray


class TokenParams(FileParams):
    """How every text source turns text into ids."""

    tokenizer: Tokenizer = Field(default="word", description="char or word tokens")
    max_length: int = Field(default=64, ge=1, description="tokens per row: cut or padded (id 0)")
    min_count: int = Field(default=1, ge=1, description="rarer train tokens become unknown (id 1)")
    standardize: Literal[False] = Field(default=False, description="token ids are not scaled")

    def tokens(self, column: str) -> Tokens:
        return Tokens(
            column=column,
            tokenizer=self.tokenizer,
            max_length=self.max_length,
            min_count=self.min_count,
        )


class Text(TokenParams):
    """A CSV of a text column and a target column; relative paths are from the experiment
    file's folder."""

    path_fields: ClassVar[tuple[str, ...]] = ("path",)
    path: PathText = Field(description="the CSV file")
    text: str = Field(default="text", description="the column of text")
    target: str = Field(description="the label (or value) column")
    task: TargetKind | None = task_field()


def text_column(frame: pd.DataFrame, column: str, file: Path, key: str) -> list[str]:
    """The cells of a text column; an absent column or empty cells are refused."""
    from nncli.data.csv import _known

    _known([column], [str(c) for c in frame.columns], key, file)
    missing = frame[column].isna().to_numpy()
    if missing.any():
        raise NncliError(
            f"text column '{column}' of {file} is empty on {lines(missing)}; give each row text"
        )
    return [str(v) for v in frame[column].tolist()]


def text_dataset(
    texts: list[str],
    y: NDArray[Any],
    kind: TargetKind,
    tokens: Tokens,
    class_names: list[str] | None,
    target: str,
) -> Dataset:
    """Rows of text, their ids left for `prepare` (x holds zeros until it fits the vocabulary)."""
    import numpy as np

    return Dataset(
        np.zeros((len(texts), tokens.max_length), dtype=np.float32),
        y,
        kind,
        class_names,
        target_names=[target],
        feature_names=[f"token{i + 1}" for i in range(tokens.max_length)],
        texts=texts,
        tokens=tokens,
    )


@datasets.register("text", params=Text, imports=("pandas",))
def text(p: Text, seed: int, loss_target: LossTarget | None = None) -> Dataset:
    """A text column as token ids, and a label column (classes) or a value column."""
    import numpy as np

    from nncli.data.csv import _known, table_targets

    file = Path(p.path)
    frame = read_csv(file, "data.path")
    _known([p.target], [str(c) for c in frame.columns], "data.target", file)
    if p.target == p.text:
        raise NncliError(f"data.target: '{p.target}' is the text column; it cannot be the target")
    texts = text_column(frame, p.text, file, "data.text")
    task = resolve_task(p.task, loss_target, 1) or "classification"
    ys, class_names = table_targets(
        {"train": frame}, {"train": (file, "data.path")}, [p.target], task
    )
    y = np.concatenate(ys)
    return text_dataset(texts, y, task, p.tokens(p.text), class_names, p.target)


def token_rows(tokens: Tokens, frame: pd.DataFrame, file: Path) -> NDArray[np.float32]:
    """New rows' text as a trained run's ids (its vocabulary; unseen tokens unknown)."""
    return tokens.ids(text_column(frame, tokens.column, file, "input"))
