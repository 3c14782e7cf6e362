"""The ``eoscale`` command line: thin commands over the library; rich only here."""
