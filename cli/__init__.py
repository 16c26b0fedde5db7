"""The ``fastnn`` command-line application (installed as ``fastnn.cli``).

The commands only parse options and call the library; nothing numerical lives here.
"""
