"""Run the usn-keypoints CLI with certification budgets on the CPU time of the certifying thread
(a fair stand-in for an idle core on a loaded machine)."""
import sys, time
from usn_robust_keypoints.certify import native
native.clock = time.thread_time
from usn_robust_keypoints.cli import main
sys.exit(main())
