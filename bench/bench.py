#!/usr/bin/env python3
"""Side-by-side benchmark of tether and containerd-shim-runc-v2 (B1-B7).

Run through bench/run.sh, which builds tether first. See bench/README.md for
what each benchmark does and how it is measured, and for the map of the
package behind this entry point (bench/tetherbench/).
"""

import sys

from tetherbench.cli import main

if __name__ == "__main__":
    sys.exit(main())
