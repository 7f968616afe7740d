"""Constants of the swarm file: vocabularies, name patterns and the limits that keep
validation bounded in time and memory whatever the input (each far above a real lab's file).
"""

from __future__ import annotations

import re

FILEVERSION = 1
KINDS = ("crazyflie", "ground")
BACKENDS = {"crazyflie": ("sim", "cflib"), "ground": ("sim", "external")}
DEPLETIONS = ("persistent", "instantaneous")
CLASS_K = ("linear", "cubic")
EVENT_TYPES = ("discharge", "fail", "demand", "takeoff", "land")
#: ``select`` values of an event that picks its robot when it fires (instead of ``robot``).
EVENT_SELECTORS = ("alone",)
TIMINGS = ("lockstep", "free")
RESERVED_NAMES = ("all", "swarm", "consumers", "clock")
# Matched whole (``fullmatch``; ``\Z``, not ``$``, which also matches before a final newline).
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
URI_RE = re.compile(r"(radio|usb|tcp|udp)://\S+\Z")
TOPIC_RE = re.compile(r"/?[A-Za-z_~][A-Za-z0-9_/~]*\Z")

# ----------------------------------------------------------------------------- limits
# Validation time and memory grow with these; each is far above a real lab's swarm file.
#: Bytes of a swarm file, checked before parsing. A file at the count limits below, written
#: out in full block style (``yaml.safe_dump(cfg.to_mapping())``: 1000 robots and 1000
#: consumers), is about 0.3 MiB; parsing 1 MiB takes about a second.
MAX_FILE_BYTES = 2**20
#: Robots in one file: 20 times the largest Crazyflie swarm flown (Crazyswarm, 49) and the
#: largest N of ``benchmarks/world.py``; every robot is several ROS nodes.
MAX_ROBOTS = 1000
#: Consumers in one file (the papers use M = 4 to 10; every robot observes every consumer).
MAX_CONSUMERS = 1000
#: Scripted events in one file.
MAX_EVENTS = 10_000
#: Resource types (the papers use r = 2; r sets the policy's input sizes).
MAX_RESOURCE_TYPES = 64
#: Keys in any one mapping (``robot_types``, a robot's ``resources``, a ``demand``, ...).
MAX_KEYS = 64
#: Characters of a robot / consumer / type name (a ROS name token and namespace; 63 as a
#: DNS label, well inside rmw's 247-character topic names with the suffixes added).
MAX_NAME_LEN = 63
#: Characters of a topic name (rmw's ``RMW_TOPIC_MAX_NAME_LENGTH``).
MAX_TOPIC_LEN = 247
#: Characters of any other text (URIs, the checkpoint path): a path's ``PATH_MAX``.
MAX_TEXT_LEN = 4096
#: Problems listed; the rest are counted in one last problem.
MAX_PROBLEMS = 500
#: Overlapping start poses (errors) or consumer areas (warnings) listed one by one.
MAX_OVERLAPS_LISTED = 200
#: Nesting levels of collections (a swarm file has about 6).
MAX_NESTING = 50
#: Cells of a routing grid (a 500 x 500 MovingAI map; each view row is 5 doubles).
MAX_CELLS = 250_000
#: Entries of ``routing.obstacles`` (cells or rectangles) and of ``routing.tasks``.
MAX_ROUTING_ITEMS = 10_000
#: Sensing radius ``routing.k`` [cells]: a view has 2k^2 + 2k + 1 cells (8321 at 64).
MAX_K = 64
#: ``routing.psi``: 2^psi PS steps per SOAC iteration (the paper fixes psi = 2).
MAX_PSI = 6
#: Bytes of a MovingAI map file (a 500 x 500 map is about 0.25 MiB).
MAX_MAP_BYTES = 4 * 2**20
#: Cells of a grid with ``random_obstacles`` (the connected draw labels components in Python).
MAX_RANDOM_CELLS = 65_536
#: Largest ``seed`` (NumPy's seeds are unsigned 64-bit; this keeps them in a signed int64).
MAX_SEED = 2**63 - 1
#: Largest ``|coordinate|`` of an arena wall [m] (10 km): far beyond a lab or a field site,
#: and small enough that positions normalised to the arena stay exact in float32 (an arena of
#: +-1e300 m made every robot's normalised position 0 and the policy's spawn grids absurd).
MAX_ARENA_M = 10_000.0

#: Per-kind defaults used when neither the robot nor its ``robot_types`` entry sets a field.
KIND_DEFAULTS: dict[str, dict[str, float]] = {
    "crazyflie": {"radius": 0.05, "max_speed": 0.5, "max_yaw_rate": 1.0, "takeoff_height": 0.5},
    "ground": {"radius": 0.1, "max_speed": 0.3, "max_yaw_rate": 2.0, "takeoff_height": 0.0},
}
