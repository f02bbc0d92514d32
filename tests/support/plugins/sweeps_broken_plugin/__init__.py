"""A plugin that cannot be imported: the worker must refuse to start, saying so in one line."""

import a_module_that_is_not_installed  # noqa: F401
