"""Run every benchmark in turn."""

import sys

from bench import datapath, launch, memory, pg_load, tpcds

sys.argv = sys.argv[:1]
memory.main()
datapath.main()
pg_load.main()
launch.main()
tpcds.main()
