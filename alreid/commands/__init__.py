"""Sub-commands of the ``alreid`` CLI, one module each; every module exposes ``register(subparsers)``.

Modules import their heavy dependencies inside the command functions, so building the parser stays fast.
"""

COMMAND_MODULES = (
    "alreid.commands.methods",
    "alreid.commands.run",
    "alreid.commands.bench",
    "alreid.commands.table",
    "alreid.commands.features",
    "alreid.commands.annotate",
)
