"""``python -m usn_robust_keypoints.cli`` = ``usn-keypoints``."""

import sys

from . import main

sys.exit(main())
