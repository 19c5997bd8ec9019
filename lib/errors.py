"""One error hierarchy, so callers can catch "our" errors and show them clearly."""


class NetzausbauError(Exception):
    """Root of every error this project raises on purpose."""


class ImportRefused(NetzausbauError):
    """A whole file was refused: unreadable, wrong format or missing required columns.

    Nothing was written to the store.
    """

    def __init__(self, file_name: str, message: str):
        self.file_name = file_name
        self.message = message
        super().__init__(f"{file_name}: {message}")

    def __reduce__(self):
        return type(self), (self.file_name, self.message)


class StoreError(NetzausbauError):
    """The store cannot be opened or is not in the expected state."""
