"""The errors of the datasets package."""


class DatasetError(ValueError):
    """A dataset directory or one of its files is missing, inconsistent or corrupt."""


class ToolError(Exception):
    """A user-facing error of dataset creation or inspection: ``progan-dataset`` prints it as
    one line and exits with status 1, without a traceback."""


class SkipImage(Exception):
    """An input image that cannot be used (unreadable, wrong shape): skipped with a warning."""
