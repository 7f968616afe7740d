"""Swarm configuration: the YAML schema every node and tool reads (``fileversion: 1``).

A swarm file describes one mission: the arena, the robots (with a ``robot_types`` defaults
layer so a 30-robot file stays short), the consumers and their demands, the communication
radius ``C`` and sensing radius, the rates, the CBF safety parameters, an optional policy
checkpoint and scripted events. :func:`load_config` parses and validates it and returns a
frozen :class:`SwarmConfig`; every problem found is reported at once as a :class:`Problem`
(key path, what is wrong, how to fix it) inside one :class:`ConfigError`. Validation never
raises anything else, whatever the input.

Resource model (LGTC-IPPO paper, Section II): robot ``i`` carries supplies ``so_i`` (one
amount per resource type) and consumer ``m`` demands ``de_m``; each resource type has one
depletion kind: ``persistent`` (coverage: the robot's supply counts against ``de_m`` while it
stays inside the consumer's interaction radius ``R_m`` and is never consumed; the demand
comes back when it leaves) or ``instantaneous`` (handed over at once on arrival). There is
no drain-at-a-rate kind: a ``rate`` key is rejected (a battery running out is a scripted
``discharge`` event). The paper assumes ``sum_i so_i <= sum_m de_m``; a file that breaks
this gets a warning, not an error.

Units: metres, seconds, radians; ``pose = [x, y, z, yaw]`` in the ``world`` frame.

Limits keep validation bounded in time and memory whatever the input (each is far above
what a lab flies; a file over one gets one problem naming the limit): a file of at most
:data:`MAX_FILE_BYTES` (checked before parsing), at most :data:`MAX_ROBOTS` robots,
:data:`MAX_CONSUMERS` consumers, :data:`MAX_EVENTS` events, :data:`MAX_RESOURCE_TYPES`
resource types, :data:`MAX_KEYS` keys in any mapping, names of at most
:data:`MAX_NAME_LEN` characters and other text of at most :data:`MAX_TEXT_LEN`. Start-pose
and consumer overlaps are found with a grid hash (:func:`overlapping_pairs`), never an
``N x N`` array.

Layout: :mod:`.schema` and :mod:`.swarm` hold the dataclasses, each field's metadata declaring
how its key is checked (:func:`.checks.rule`); :mod:`.checks` is the engine that reads a
mapping against those rules; :mod:`.robots`, :mod:`.consumers`, :mod:`.geometry`,
:mod:`.routing` and :mod:`.cells` check one part of the file each; :mod:`.parse` reads the
file and :mod:`.load` puts it together; :mod:`.limits` holds the constants.
"""

from sim_bridge.config.files import check_files, resolve_package_path
from sim_bridge.config.geometry import overlapping_pairs
from sim_bridge.config.limits import (
    BACKENDS,
    CLASS_K,
    DEPLETIONS,
    EVENT_TYPES,
    FILEVERSION,
    KIND_DEFAULTS,
    KINDS,
    MAX_CELLS,
    MAX_CONSUMERS,
    MAX_EVENTS,
    MAX_FILE_BYTES,
    MAX_K,
    MAX_KEYS,
    MAX_MAP_BYTES,
    MAX_NAME_LEN,
    MAX_NESTING,
    MAX_OVERLAPS_LISTED,
    MAX_PROBLEMS,
    MAX_PSI,
    MAX_RANDOM_CELLS,
    MAX_RESOURCE_TYPES,
    MAX_ROBOTS,
    MAX_ROUTING_ITEMS,
    MAX_TEXT_LEN,
    MAX_TOPIC_LEN,
    NAME_RE,
    RESERVED_NAMES,
    TIMINGS,
    TOPIC_RE,
    URI_RE,
)
from sim_bridge.config.load import load_config, validate
from sim_bridge.config.parse import parse_yaml
from sim_bridge.config.problems import ConfigError, Problem
from sim_bridge.config.schema import (
    Arena,
    BatteryConfig,
    ConsumerConfig,
    Event,
    PolicyConfig,
    Rates,
    ResourceSpec,
    RobotConfig,
    Safety,
)
from sim_bridge.config.swarm import RoutingConfig, SwarmConfig, force_sim, routing_comm_radius

__all__ = [
    "BACKENDS",
    "CLASS_K",
    "DEPLETIONS",
    "EVENT_TYPES",
    "FILEVERSION",
    "KINDS",
    "KIND_DEFAULTS",
    "MAX_CELLS",
    "MAX_CONSUMERS",
    "MAX_EVENTS",
    "MAX_FILE_BYTES",
    "MAX_K",
    "MAX_KEYS",
    "MAX_MAP_BYTES",
    "MAX_NAME_LEN",
    "MAX_NESTING",
    "MAX_OVERLAPS_LISTED",
    "MAX_PROBLEMS",
    "MAX_PSI",
    "MAX_RANDOM_CELLS",
    "MAX_RESOURCE_TYPES",
    "MAX_ROBOTS",
    "MAX_ROUTING_ITEMS",
    "MAX_TEXT_LEN",
    "MAX_TOPIC_LEN",
    "NAME_RE",
    "RESERVED_NAMES",
    "TIMINGS",
    "TOPIC_RE",
    "URI_RE",
    "Arena",
    "BatteryConfig",
    "ConfigError",
    "ConsumerConfig",
    "Event",
    "PolicyConfig",
    "Problem",
    "Rates",
    "ResourceSpec",
    "RobotConfig",
    "RoutingConfig",
    "Safety",
    "SwarmConfig",
    "check_files",
    "force_sim",
    "load_config",
    "overlapping_pairs",
    "parse_yaml",
    "resolve_package_path",
    "routing_comm_radius",
    "validate",
]
