"""LightningCLI entry point: ``python train.py fit|validate|test|predict --config <yaml> [...]``.

Models and datamodules come from YAML configs under ``configs/`` (``class_path``/``init_args``);
devices, strategy and precision come from the Trainer flags. Nothing else lives here, except that a
``--ckpt_path`` file is read once with the project's safe reader before Lightning restores it, so that a
checkpoint holding pickled code or an unreadable file is refused with an error naming the file, and
a config that gives a key twice is refused naming the key and both lines (:mod:`analysis.runs.strict_yaml`).
"""

import sys
from pathlib import Path
from typing import Optional, Sequence

from jsonargparse import get_loader, set_loader
from lightning.pytorch.cli import LightningCLI

from analysis.runs.strict_yaml import DuplicateKeyError, check_unique_keys, jsonargparse_loader

#: ``ckpt_path`` values that Lightning resolves itself (not a file name).
LIGHTNING_CKPT_NAMES = ("best", "last", "hpc")


class AapeCLI(LightningCLI):
    """LightningCLI that checks ``--ckpt_path`` with :func:`analysis.runs.read.load_tensor_file`
    (``weights_only=True``; UnsafeFileError / UnreadableFileError naming the file) before Lightning reads it
    (Lightning reads it twice: for its hyperparameters while parsing, and to restore it)."""

    _ckpt_checked = False

    def _check_ckpt_path(self) -> None:
        sub = self.config.get("subcommand")
        if self._ckpt_checked or not sub:
            return
        path = self.config[sub].get("ckpt_path")
        if path and str(path) not in LIGHTNING_CKPT_NAMES and not str(path).startswith("registry"):
            if not Path(path).is_file():
                raise FileNotFoundError(f"--ckpt_path {path}: no such file")
            from analysis.runs.read import load_tensor_file

            load_tensor_file(path)
        self._ckpt_checked = True

    def _parse_ckpt_path(self) -> None:  # Lightning's first read of the file, while parsing
        self._check_ckpt_path()
        parse = getattr(super(), "_parse_ckpt_path", None)
        if parse is not None:
            parse()

    before_fit = before_validate = before_test = before_predict = _check_ckpt_path


def use_strict_yaml() -> None:
    """jsonargparse's YAML loader refuses duplicate keys from now on (installed once)."""
    loader = get_loader("yaml")
    if not getattr(loader, "refuses_duplicate_keys", False):
        set_loader("yaml", jsonargparse_loader(loader))


def check_config_files(argv: Sequence[str]) -> None:
    """Every ``--config FILE`` of ``argv`` that gives a key twice: :class:`DuplicateKeyError` naming the file,
    the key and both lines (the loader of :func:`use_strict_yaml` sees only the text)."""
    for i, a in enumerate(argv):
        path: Optional[str] = (
            argv[i + 1]
            if a == "--config" and i + 1 < len(argv)
            else a.split("=", 1)[1]
            if a.startswith("--config=")
            else None
        )
        if path and Path(path).is_file():
            check_unique_keys(Path(path).read_text(encoding="utf-8"), path)


def main(args=None, run: bool = True) -> LightningCLI:
    """Build the CLI (``run=False``: parse and instantiate only, as the config tests do)."""
    use_strict_yaml()
    check_config_files(list(sys.argv[1:] if args is None else args))
    return AapeCLI(
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


if __name__ == "__main__":
    try:
        main()
    except DuplicateKeyError as e:
        sys.exit(f"error: {e}")
