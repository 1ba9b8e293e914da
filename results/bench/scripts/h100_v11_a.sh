#!/usr/bin/env bash
# v11: every GPU test of the repository (the config tests, tests/test_kernel_configs_gpu.py, first), run at
# e930125 to check the 3b9bca6 test refactor and at 153a245 after the size-class keys. The same steps
# as v10's final run, so it runs that script.   bash results/bench/scripts/h100_v11_a.sh COMMIT
exec bash "$(dirname "$0")/h100_v10_h.sh" "$@"
