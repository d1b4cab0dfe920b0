"""Form fields: a label and its control on one line, with the field's problem in red under them."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select, Static


class Field(Vertical):
    """One labelled control of a form, found by its ``key`` (the control's id).

    Args:
        label: Shown left of the control.
        control: An ``Input``, ``Select`` or ``Checkbox`` whose id is the field's key.
        extra: Widgets shown right of the control (a button).
        help: What the field means, for the screen's hint line.
    """

    DEFAULT_CSS = """
    Field {
        height: auto;
    }
    Field > Horizontal {
        height: auto;
    }
    Field .field-label {
        width: 20;
        padding-right: 1;
        color: $text-muted;
    }
    Field Input, Field Select {
        width: 1fr;
        max-width: 64;
    }
    Field .field-problem {
        display: none;
        padding-left: 20;
        color: $error;
    }
    Field.-invalid .field-problem {
        display: block;
    }
    """

    def __init__(self, label: str, control: Widget, *extra: Widget, help: str = "") -> None:
        assert control.id is not None, "a field's control needs an id: it is the field's key"
        super().__init__(id=f"field-{control.id}")
        self.label = label
        self.control = control
        self.extra = extra
        self.help = help

    @property
    def key(self) -> str:
        """The control's id, which names the field in :func:`stratcast.tui.job_form.read_form`'s texts."""
        assert self.control.id is not None
        return self.control.id

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(self.label, classes="field-label")
            yield self.control
            yield from self.extra
        yield Static("", classes="field-problem")

    @property
    def text(self) -> str:
        """The control's value as text (``""`` for a blank select, ``true``/``false`` for a checkbox)."""
        control = self.control
        if isinstance(control, Input):
            return control.value
        if isinstance(control, Select):
            return "" if control.value is Select.NULL else str(control.value)
        if isinstance(control, Checkbox):
            return "true" if control.value else "false"
        raise TypeError(f"a field cannot read a {type(control).__name__}")

    def show_problem(self, problem: str | None) -> None:
        """Show what is wrong with the field's value under it (None: nothing)."""
        self.query_one(".field-problem", Static).update(problem or "")
        self.set_class(bool(problem), "-invalid")
