"""Child process of the benign-noise matrix: `python -m polcore.forging.noise_worker LOG SETTINGS OUT`.

A recomputation in a fresh process is one of the noise sources Suliman et al. ask about; the
work itself is `polcore.forging.noise.worker_main` (inputs and outputs are safetensors and JSON).
"""

from __future__ import annotations

import sys
from pathlib import Path

from polcore.forging.noise import worker_main

if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit("usage: python -m polcore.forging.noise_worker LOG.safetensors SETTINGS.json OUT.safetensors")
    worker_main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
