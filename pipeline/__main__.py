import atexit
import os
import sys

from pipeline.cli import main

code = main()
if code == 130:
    # Interrupted: everything is cleaned up, but a model call may still be running in a stage
    # thread, and the interpreter would abort ("terminate called without an active exception")
    # if it finalised under it. Run the exit handlers and leave with 130 at once.
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
