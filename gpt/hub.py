"""`python -m gpt.hub push|pull ...`: an alias kept so the documented command works; the code is gpt/sharing/hub.py."""

import sys

from gpt.sharing.hub import main

if __name__ == "__main__":
    sys.exit(main())
