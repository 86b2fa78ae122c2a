"""Built-in call applications, named on the command line as ``module:function``."""
