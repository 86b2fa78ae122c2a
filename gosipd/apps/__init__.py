"""Built-in call applications, named on the command line as ``module:function``."""

#: The built-ins whose argument names a file in ``[files] directory`` (``play:FILE``...).
FILE_APPS = frozenset({"play", "record", "ivr", "demo"})
