"""Experience replay.

  host.py    `Replay`: uint8 chunks written to disk as they fill, uniform windows (V3), whole
             episodes (V1/V2, with `prioritize_ends`), the online queue and replay-context latents
  device.py  the same sampling in device memory, a ring the compiled device loop writes and reads

May import: `common.nn` at most.
"""
