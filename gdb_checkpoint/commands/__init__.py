"""gdb.Command and gdb.Parameter classes: parse arguments, call one function of the logic, report."""

_registered = False


def register():
    global _registered
    if _registered:
        return
    from . import base, checkpoint, mi, rcore
    base.register()
    rcore.register()
    checkpoint.register()
    mi.register()
    _registered = True
