"""LightningCLI entry point: ``python train.py fit|validate|test|predict --config <yaml> [...]``.

Models and datamodules come from YAML configs under ``configs/`` (``class_path``/``init_args``);
devices, strategy and precision come from the Trainer flags. Nothing else lives here.
"""
from lightning.pytorch.cli import LightningCLI


def main(args=None, run: bool = True) -> LightningCLI:
    """Build the CLI (``run=False``: parse and instantiate only, as the config tests do)."""
    return LightningCLI(
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
    )


if __name__ == "__main__":
    main()
