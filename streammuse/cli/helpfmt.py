"""Help-screen polish on top of Typer's rich help (Typer >= 0.29 formats the parameters).

* A flag takes no value, so its type column is empty (Typer prints ``<bool>``, even for
  ``--help``).
* Arguments read like click's: ``TESTSET`` in the usage line, the arguments panel and
  errors, ``[RUNS]...`` when optional (Typer prints ``{testset}`` and ``[runs]...``).
* A list argument shows its element type, ``<path>`` (Typer prints ``<list[Path]>``).

Each patch applies only where the Typer in use has the method it replaces.
"""

from __future__ import annotations


def _element_type(label: str | None) -> str | None:
    if label and label.startswith("<list[") and label.endswith("]>"):
        return "<" + label[len("<list["):-2].lower() + ">"
    return label


def polish_help() -> None:
    """Patch Typer's parameter classes once (idempotent)."""
    from typer import core

    option, argument = core.TyperOption, getattr(core, "TyperArgument", None)
    if getattr(option, "_streammuse_polished", False):
        return
    if hasattr(option, "display_type_rich"):
        option_type = option.display_type_rich
        option.display_type_rich = lambda self, ctx: None if self.is_flag else _element_type(option_type(self, ctx))
    if argument is not None and hasattr(argument, "_usage_display_name"):
        argument_type = argument.display_type_rich

        def usage_name(self) -> str:
            name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
            return name + ("..." if self.nargs != 1 else "")

        argument.display_name_raw = property(lambda self: self.metavar or self.name.upper())
        argument._usage_display_name = usage_name
        argument.display_type_rich = lambda self, ctx: _element_type(argument_type(self, ctx))
    option._streammuse_polished = True
