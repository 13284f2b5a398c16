"""What the preloader tests run in each forked child (instead of prefect.engine)."""

import os
import signal
import sys
import time
from pathlib import Path

if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "report":  # what the child took from its launcher
        print(f"cwd={os.getcwd()} marker={os.environ.get('MARKER')} argv={sys.argv[1:]}")
        sys.stdout.flush()
        sys.exit(int(sys.argv[2]))
    if mode == "wait":  # until a signal; the file shows it got one
        flag = Path(sys.argv[2])
        signal.signal(signal.SIGTERM, lambda *_: (flag.write_text("SIGTERM"), sys.exit(143)))
        Path(sys.argv[3]).write_text(str(os.getpid()))
        while True:
            time.sleep(0.05)
