"""Partition reassignment planner: minimal movement, rack-aware, deterministic. Pure.

Why a planner of our own: `kafka-reassign-partitions --generate` reassigns almost every partition
(it recomputes a fresh round-robin layout), so adding one broker copies most of the cluster's data.
Every replica that changes broker is a full copy of the partition over the network, so the number
of replica moves is the cost to minimise; reordering a replica list only changes the preferred
leader and moves no data, so it is free by comparison.

Constraints and targets
-----------------------
* Rack spread: a partition with replication factor RF must span `min(RF, R)` distinct racks, R the
  number of racks among the remaining brokers. A broker without a rack is its own failure domain
  (a rack of one), so with no racks at all the rule is just "distinct brokers".
* Balance: per-broker replica targets come from water-filling the total replica count over the
  racks, proportional to broker weight but clamped to what the spread allows a rack to hold (with
  RF >= R each rack must hold at least one replica of every partition and at most RF - R + 1; with
  RF < R at most one), then over the brokers of each rack (at most one replica per partition per
  broker). A broker is balanced when its count is within [floor(ideal), ceil(ideal)] — the "±1 of
  the best the rack spread allows". Leaders are balanced the same way, each broker capped at the
  number of replicas it holds. Removed brokers have target 0.

Algorithm (greedy)
------------------
0. Repair: a partition below its rack spread moves a replica from a doubled-up rack to the least
   loaded broker of a missing rack.
1. Excess: while a broker is above its band (removed brokers first), move one of its replicas to the
   most under-target broker with room that keeps the partition's rack spread. The partition is the
   first acceptable one in (bytes, topic, partition) order, so small partitions move first. The new
   broker takes the old one's position in the replica list, leadership included.
2. Deficit: while a broker is below its band, pull one replica from the most loaded broker above
   its floor, same rules.
3. Leaders: move preferred leadership (reorder a replica list, no data moves) along augmenting paths
   (A leads p, B replicates p: A -> B) from brokers above their leader band to brokers below it.
Ties break by broker id; every set is sorted before iteration, so equal input gives equal output.

Why it reaches the lower bound
------------------------------
A replica move lowers one broker's count by one and raises another's by one. A broker above its band
needs at least (count - ceil) moves away, one below at least (floor - count) moves in, so any plan
that balances needs at least max(excess, deficit) moves (and one per rack an under-spread partition
misses). When every partition has exactly one replica in every rack (RF = number of racks, the usual
Kafka layout) no move can ever change rack, so the bound is taken per rack: sum of max(excess_r,
deficit_r). That is `lower_bound`.

Step 1 only moves from an above-band broker to one below its ceiling, so each move removes one unit
of excess; while some broker is below its floor, a move that also pays off a unit of deficit is
taken first (`_feed_floor`). Step 2 only runs for the deficit left. So the greedy spends exactly
max(excess, deficit) moves whenever a valid (source, destination) pair exists at every step. With
one replica per rack that always holds inside each rack: a same-rack destination never holds the
partition already, so any replica of an over broker fits any under broker of its rack — scale-out
(new, empty brokers) and scale-in (a removed broker's replicas go to the remaining brokers of its
rack) reach the bound exactly (tests assert `replica_moves == lower_bound`; 330 random Kafka-made
layouts, 0 misses). On scale-out of a balanced cluster the old brokers all sit at or above their
ceiling, so they are never destinations: every move goes to a new broker.

Outside that case (RF below the number of racks, uneven racks, no racks with RF close to the broker
count) which replica may reach which broker is pinned, the bound need not be tight and the greedy
may spend a few moves more (514 random Kafka-made layouts with uneven racks or RF != racks: 20 above
the bound by 1-7 moves). When no valid pair exists at all (6 of those 514), the planner leaves that
broker outside its band and says so in `notes` — never silently.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from reconciler.observe.model import PartitionState

_EPS = 1e-6


@dataclass(frozen=True)
class BrokerInfo:
    """A broker the planner may place replicas on. `weight` scales its share (bigger disks, CPUs)."""

    id: int
    rack: str | None
    weight: float = 1.0


@dataclass(frozen=True)
class Move:
    """One partition whose replica list changes. Replicas copied = set(after) - set(before);
    a pure reorder (new preferred leader, no data copied) has `bytes` 0."""

    topic: str
    partition: int
    before: tuple[int, ...]
    after: tuple[int, ...]
    bytes: int

    @property
    def added(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.after) - set(self.before)))


@dataclass(frozen=True)
class Proposal:
    """The plan: changed partitions, the full target assignment, and its cost against the bound."""

    moves: tuple[Move, ...]
    target: dict[tuple[str, int], tuple[int, ...]]
    replica_moves: int
    lower_bound: int
    bytes_to_move: int
    notes: tuple[str, ...]

    @property
    def reorders(self) -> int:
        """Partitions whose replica set is unchanged but whose preferred leader changes."""
        return sum(1 for m in self.moves if not m.added)


class PlacementError(Exception):
    """The brokers that remain cannot hold the partitions as asked; the message names the topics."""


# ---------------------------------------------------------------------------------------------
# Kafka's own rack-aware assignment (what topic creation does): used to build realistic layouts.


def rack_aware_assignment(brokers: Iterable[BrokerInfo], n_partitions: int, rf: int,
                          start_index: int = 0) -> list[tuple[int, ...]]:
    """Replica lists as Kafka's AdminUtils.assignReplicasToBrokersRackAware makes them (fixed start).

    Brokers are arranged rack-alternated (racks sorted, brokers sorted within each), leaders walk that
    list, followers are shifted so that each partition takes a new rack before repeating one.
    """
    infos = sorted(brokers, key=lambda b: b.id)
    rack_of = {b.id: _rack_key(b) for b in infos}
    by_rack: dict[str, list[int]] = {}
    for b in infos:
        by_rack.setdefault(rack_of[b.id], []).append(b.id)
    arranged: list[int] = []
    queues = [list(v) for _, v in sorted(by_rack.items())]
    while any(queues):
        for q in queues:
            if q:
                arranged.append(q.pop(0))
    n, n_racks = len(arranged), len(by_rack)
    if rf > n:
        raise PlacementError(f"replication factor {rf} is larger than the {n} brokers available")
    shift = start_index
    out: list[tuple[int, ...]] = []
    for pid in range(n_partitions):
        if pid > 0 and pid % n == 0:
            shift += 1
        first = (pid + start_index) % n
        replicas = [arranged[first]]
        racks = {rack_of[arranged[first]]}
        k = 0
        for _ in range(rf - 1):
            while True:
                idx = (first + 1 + (shift * n_racks + k) % (n - 1)) % n if n > 1 else first
                cand = arranged[idx]
                k += 1
                if ((rack_of[cand] not in racks or len(racks) == n_racks)
                        and (cand not in replicas or len(replicas) == n)):
                    replicas.append(cand)
                    racks.add(rack_of[cand])
                    break
        out.append(tuple(replicas))
    return out


# ---------------------------------------------------------------------------------------------
# Public entry points


def plan_reassignment(brokers: list[BrokerInfo], partitions: Iterable[PartitionState],
                      sizes: Mapping[tuple[str, int], int] | None = None, *,
                      remove: Iterable[int] = frozenset(), max_moves: int | None = None) -> Proposal:
    """Minimal-movement, rack-aware reassignment of `partitions` over `brokers` minus `remove`.

    `sizes` (bytes per partition) makes small partitions move first and breaks load ties by bytes;
    `max_moves` caps replica moves (for reassigning in steps); leader reordering is not capped.
    Raises PlacementError when the remaining brokers cannot hold a topic's RF or rack spread.
    """
    lay = _Layout(brokers, partitions, sizes or {}, frozenset(remove))
    st = _State(lay)
    bound = st.lower_bound()
    budget = [math.inf if max_moves is None else max(0, max_moves)]
    st.repair(budget)
    st.excess_phase(budget)
    st.deficit_phase(budget)
    if max_moves is not None and budget[0] <= 0 and st.unbalanced():
        lay.notes.append(f"stopped at max_moves={max_moves}; run the planner again on the result for the rest")
    st.report_unbalanced()
    st.balance_leaders()
    return st.proposal(bound)


def lower_bound(brokers: list[BrokerInfo], partitions: Iterable[PartitionState], *,
                remove: Iterable[int] = frozenset()) -> int:
    """Minimum replica moves any plan reaching the balance target (and rack spread) needs."""
    return _State(_Layout(brokers, partitions, {}, frozenset(remove))).lower_bound()


def balance_report(brokers: Iterable[BrokerInfo],
                   target: Mapping[tuple[str, int], tuple[int, ...]]) -> dict[str, object]:
    """Replicas and leaders per broker (with min/max) and how many racks each partition spans."""
    infos = sorted(brokers, key=lambda b: b.id)
    rack_of = {b.id: _rack_key(b) for b in infos}
    replicas = {b.id: 0 for b in infos}
    leaders = {b.id: 0 for b in infos}
    spans: Counter[int] = Counter()
    for _, reps in sorted(target.items()):
        for r in reps:
            replicas[r] = replicas.get(r, 0) + 1
        if reps:
            leaders[reps[0]] = leaders.get(reps[0], 0) + 1
        spans[len({rack_of.get(r, f"<broker {r}>") for r in reps})] += 1
    return {
        "replicas": dict(sorted(replicas.items())),
        "leaders": dict(sorted(leaders.items())),
        "replicas_min": min(replicas.values(), default=0),
        "replicas_max": max(replicas.values(), default=0),
        "leaders_min": min(leaders.values(), default=0),
        "leaders_max": max(leaders.values(), default=0),
        "racks_per_partition": dict(sorted(spans.items())),
        "min_racks_per_partition": min(spans, default=0),
    }


# ---------------------------------------------------------------------------------------------
# Internals


def _rack_key(b: BrokerInfo) -> str:
    return b.rack if b.rack is not None else f"<broker {b.id}>"


def _names(topics: Iterable[str]) -> str:
    ts = sorted(set(topics))
    return ", ".join(ts[:10]) + (f" and {len(ts) - 10} more" if len(ts) > 10 else "")


def _water_fill(total: float, weights: Sequence[float], lows: Sequence[float], highs: Sequence[float]) -> list[float]:
    """x_i = clamp(lam * w_i, low_i, high_i) with sum x_i = total (proportional share under caps)."""
    if not weights:
        return []
    if total <= sum(lows):
        return list(lows)
    if total >= sum(highs):
        return list(highs)
    lo, hi = 0.0, max(h / w for h, w in zip(highs, weights, strict=True))
    for _ in range(100):
        mid = (lo + hi) / 2
        if sum(min(max(mid * w, a), b) for w, a, b in zip(weights, lows, highs, strict=True)) < total:
            lo = mid
        else:
            hi = mid
    return [min(max(hi * w, a), b) for w, a, b in zip(weights, lows, highs, strict=True)]


def _toggle(links: dict[int, set[int]], v: int, p: int, add: bool) -> None:
    if add:
        links.setdefault(v, set()).add(p)
    else:
        got = links.get(v)
        if got is not None:
            got.discard(p)
            if not got:
                del links[v]


def _band(x: float) -> tuple[int, int]:
    return math.floor(x + _EPS), math.ceil(x - _EPS)


class _Layout:
    """Validated input: brokers, racks, partitions (indexed in (bytes, topic, partition) order), targets."""

    def __init__(self, brokers: list[BrokerInfo], partitions: Iterable[PartitionState],
                 sizes: Mapping[tuple[str, int], int], remove: frozenset[int]) -> None:
        self.notes: list[str] = []
        infos = sorted(brokers, key=lambda b: b.id)
        seen: set[int] = set()
        for b in infos:
            if b.id in seen:
                raise PlacementError(f"broker {b.id} is listed twice")
            if not b.weight > 0:
                raise PlacementError(f"broker {b.id}: weight must be > 0, got {b.weight}")
            seen.add(b.id)
        parts = sorted(partitions, key=lambda p: (sizes.get((p.topic, p.partition), 0), p.topic, p.partition))
        self.keys = [(p.topic, p.partition) for p in parts]
        if len(set(self.keys)) != len(self.keys):
            dup = sorted(k for k, n in Counter(self.keys).items() if n > 1)
            raise PlacementError(f"partition {dup[0][0]}-{dup[0][1]} is listed twice")
        self.size = [int(sizes.get(k, 0)) for k in self.keys]
        self.before = [tuple(p.replicas) for p in parts]
        self.rack: dict[int, str] = {b.id: _rack_key(b) for b in infos}
        self.weight: dict[int, float] = {b.id: b.weight for b in infos}
        self.removed = frozenset(remove)
        unknown: dict[int, set[str]] = {}
        for (topic, _), reps in zip(self.keys, self.before, strict=True):
            if len(set(reps)) != len(reps) or not reps:
                raise PlacementError(f"topic {topic}: replica list {list(reps)} is empty or repeats a broker")
            for r in reps:
                if r not in self.rack:
                    if r in self.removed:  # leaving and not described: a rack of its own
                        self.rack[r] = f"<broker {r}>"
                        self.weight[r] = 1.0
                    else:
                        unknown.setdefault(r, set()).add(topic)
        if unknown:
            bid, ts = sorted(unknown.items())[0]
            raise PlacementError(f"broker {bid} holds replicas of topics {_names(ts)} but is not among the brokers "
                                 "given (add it, or list it in remove)")
        gone = sorted(self.removed - set(self.rack))
        if gone:
            self.notes.append(f"remove: broker(s) {', '.join(map(str, gone))} unknown and hold nothing")
        self.ids = sorted(self.rack)
        self.eligible = [b for b in self.ids if b not in self.removed]
        self.racks = sorted({self.rack[b] for b in self.eligible})
        all_racks = len({self.rack[b.id] for b in infos}) or len(self.racks)
        self._check_capacity(all_racks)
        n_racks = len(self.racks)
        self.need = [min(len(r), n_racks) for r in self.before]
        self._targets()

    def _check_capacity(self, all_racks: int) -> None:
        n, n_racks = len(self.eligible), len(self.racks)
        short_rf: dict[int, set[str]] = {}
        short_racks: dict[int, set[str]] = {}
        for (topic, _), reps in zip(self.keys, self.before, strict=True):
            rf = len(reps)
            if rf > n:
                short_rf.setdefault(rf, set()).add(topic)
            elif min(rf, n_racks) < min(rf, all_racks):
                short_racks.setdefault(min(rf, all_racks), set()).add(topic)
        if short_rf:
            rf, ts = max(short_rf.items())
            raise PlacementError(f"topic{'s' if len(ts) > 1 else ''} {_names(ts)} need{'' if len(ts) > 1 else 's'} "
                                 f"{rf} replicas but only {n} broker{' remains' if n == 1 else 's remain'}")
        if short_racks:
            k, ts = max(short_racks.items())
            raise PlacementError(f"topic{'s' if len(ts) > 1 else ''} {_names(ts)} span{'' if len(ts) > 1 else 's'} "
                                 f"{k} racks but the remaining "
                                 f"brokers are in only {n_racks} ({', '.join(self.racks)})")

    def _targets(self) -> None:
        """Ideal replica count per broker: water-fill over racks (spread bounds), then within racks."""
        members: dict[str, list[int]] = {r: [] for r in self.racks}
        for b in self.eligible:
            members[self.rack[b]].append(b)
        n, n_racks, n_parts = len(self.eligible), len(self.racks), len(self.keys)
        by_rf = Counter(len(r) for r in self.before)
        total = sum(rf * c for rf, c in by_rf.items())
        lows, highs = [], []
        for r in self.racks:
            size = len(members[r])
            lo = hi = 0
            for rf, c in by_rf.items():
                if rf >= n_racks:
                    lo += c * max(1, rf - (n - size))
                    hi += c * min(size, rf - n_racks + 1)
                else:
                    hi += c
            lows.append(lo)
            highs.append(hi)
        rack_w = [sum(self.weight[b] for b in members[r]) for r in self.racks]
        self.ideal: dict[int, float] = dict.fromkeys(self.ids, 0.0)
        for r, t in zip(self.racks, _water_fill(total, rack_w, lows, highs), strict=True):
            bs = members[r]
            xs = _water_fill(t, [self.weight[b] for b in bs], [0.0] * len(bs), [float(n_parts)] * len(bs))
            self.ideal.update(zip(bs, xs, strict=True))
        self.lo = {b: _band(x)[0] for b, x in self.ideal.items()}
        self.hi = {b: _band(x)[1] for b, x in self.ideal.items()}


class _State:
    """Mutable working copy of the assignment plus the greedy phases."""

    def __init__(self, lay: _Layout) -> None:
        self.lay = lay
        self.reps = [list(r) for r in lay.before]
        self.count = dict.fromkeys(lay.ids, 0)
        self.bytes = dict.fromkeys(lay.ids, 0)
        self.on: dict[int, set[int]] = {b: set() for b in lay.ids}
        self.flex: dict[int, set[int]] = {b: set() for b in lay.ids}  # partitions that may leave b cross-rack
        self.elig = set(lay.eligible)
        self.elig_racks = set(lay.racks)
        for p, reps in enumerate(self.reps):
            s = lay.size[p]
            for b in reps:
                self.count[b] += 1
                self.bytes[b] += s
                self.on[b].add(p)
            self._mark_flex(p)
        self.sorted_on: dict[int, list[int] | None] = dict.fromkeys(lay.ids)
        self.head = dict.fromkeys(lay.ids, 0)
        self.moved = 0
        self.stuck: set[int] = set()
        self.deficit = sum(max(0, lay.lo[b] - self.count[b]) for b in lay.eligible)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _racks(self, p: int) -> list[str]:
        return [self.lay.rack[b] for b in self.reps[p]]

    def _mark_flex(self, p: int) -> None:
        """Record, for each replica of p, whether moving it to another rack could keep the spread."""
        racks = self._racks(p)
        present = set(racks)
        spare = len(present) - 1 >= self.lay.need[p]
        missing = self.elig_racks - present
        if not spare and not missing and len(present) == len(racks):
            return  # the common case: one replica per rack, every rack used; nothing may cross
        for b, r in zip(self.reps[p], racks, strict=True):
            if spare or missing or racks.count(r) >= 2:
                self.flex[b].add(p)

    def _valid(self, p: int, s: int, d: int) -> bool:
        reps = self.reps[p]
        if d in reps:
            return False
        rack = self.lay.rack
        if rack[s] == rack[d]:
            return True
        racks = self._racks(p)
        before = len(set(racks))
        after = before - (racks.count(rack[s]) == 1) + (rack[d] not in racks)
        return after >= min(self.lay.need[p], before)

    def _move(self, p: int, s: int, d: int) -> None:
        reps = self.reps[p]
        for b in reps:
            self.flex[b].discard(p)
        reps[reps.index(s)] = d
        self._mark_flex(p)
        size = self.lay.size[p]
        self.on[s].discard(p)
        self.on[d].add(p)
        self.sorted_on[d] = None
        lo = self.lay.lo
        self.deficit += (s in self.elig and self.count[s] <= lo[s]) - (self.count[d] < lo[d])
        self.count[s] -= 1
        self.count[d] += 1
        self.bytes[s] -= size
        self.bytes[d] += size
        self.moved += 1

    def _find(self, s: int, d: int) -> int | None:
        """First partition (in bytes, topic, partition order) on s that may move to d."""
        if self.lay.rack[s] != self.lay.rack[d]:
            for p in sorted(self.flex[s]):
                if self._valid(p, s, d):
                    return p
            return None
        lst = self.sorted_on[s]
        if lst is None:
            lst = self.sorted_on[s] = sorted(self.on[s])
            self.head[s] = 0
        on = self.on[s]
        i = self.head[s]
        while i < len(lst) and lst[i] not in on:
            i += 1
        self.head[s] = i
        for j in range(i, len(lst)):
            p = lst[j]
            if p in on and d not in self.reps[p]:
                return p
        return None

    def lower_bound(self) -> int:
        """max(excess, deficit, missing racks); per rack when no replica may change rack at all."""
        lay = self.lay
        excess: Counter[str] = Counter()
        deficit: Counter[str] = Counter()
        for b in lay.ids:
            excess[lay.rack[b]] += max(0, self.count[b] - lay.hi[b])
            deficit[lay.rack[b]] += max(0, lay.lo[b] - self.count[b])
        spread = sum(max(0, lay.need[p] - len(set(self._racks(p)))) for p in range(len(self.reps)))
        bound = max(sum(excess.values()), sum(deficit.values()), spread)
        if not any(self.flex.values()):
            # One replica in every rack for every partition (RF = number of racks): moves stay inside
            # a rack forever, so each rack pays its own max(excess, deficit).
            bound = max(bound, sum(max(excess[r], deficit[r]) for r in excess.keys() | deficit.keys()))
        return bound

    def unbalanced(self) -> list[int]:
        lay = self.lay
        return [b for b in lay.ids if not lay.lo[b] <= self.count[b] <= lay.hi[b]]

    # -- replica phases ------------------------------------------------------------------------

    def _src_key(self, b: int, ref: dict[int, int]) -> tuple[int, int, int, int]:
        return (0 if b in self.lay.removed else 1, ref[b] - self.count[b], -self.bytes[b], b)

    def _dst_key(self, b: int) -> tuple[int, int, int]:
        return (self.count[b] - self.lay.lo[b], self.bytes[b], b)

    def repair(self, budget: list[float]) -> None:
        """Give partitions below their rack spread a replica in each missing rack."""
        lay, fixed = self.lay, 0
        for p in range(len(self.reps)):
            while budget[0] > 0:
                racks = self._racks(p)
                if len(set(racks)) >= lay.need[p]:
                    break
                srcs = sorted((b for b, r in zip(self.reps[p], racks, strict=True) if racks.count(r) >= 2),
                              key=lambda b: self._src_key(b, lay.hi))
                dsts = sorted((b for b in lay.eligible if lay.rack[b] not in racks), key=self._dst_key)
                if not srcs or not dsts:
                    break
                self._move(p, srcs[0], dsts[0])
                budget[0] -= 1
                fixed += 1
        if fixed:
            lay.notes.append(f"rack spread: {fixed} replica move(s) to partitions missing a rack")

    def excess_phase(self, budget: list[float]) -> None:
        """Move replicas off brokers above their band (removed brokers first) to the most under-target."""
        lay = self.lay
        srcs: list[tuple[tuple[int, ...], int]] = [(self._src_key(b, lay.hi), b) for b in lay.ids
                                                   if self.count[b] > lay.hi[b]]
        heapq.heapify(srcs)
        dsts: dict[str, list[tuple[tuple[int, ...], int]]] = {r: [] for r in lay.racks}
        for b in lay.eligible:
            if self.count[b] < lay.hi[b]:
                dsts[lay.rack[b]].append((self._dst_key(b), b))
        for h in dsts.values():
            heapq.heapify(h)
        while srcs and budget[0] > 0:
            key, s = heapq.heappop(srcs)
            if self.count[s] <= lay.hi[s] or key != self._src_key(s, lay.hi):
                continue
            fed = self._feed_floor(s, key, srcs, dsts) if self.deficit > 0 else None
            found: tuple[int, int] | None
            if fed is not None:
                s, found = fed
            else:
                found = self._best_dest(s, dsts)
            if found is None and s in lay.removed:  # must leave even if everyone is at ceiling
                found = self._any_dest(s)
            if found is None:
                self.stuck.add(s)
                continue
            p, d = found
            self._move(p, s, d)
            budget[0] -= 1
            if self.count[s] > lay.hi[s]:
                heapq.heappush(srcs, (self._src_key(s, lay.hi), s))
            if self.count[d] < lay.hi[d]:
                heapq.heappush(dsts[lay.rack[d]], (self._dst_key(d), d))

    def _feed_floor(self, s: int, key: tuple[int, ...], srcs: list[tuple[tuple[int, ...], int]],
                    dsts: dict[str, list[tuple[tuple[int, ...], int]]]) -> tuple[int, tuple[int, int]] | None:
        """A move from an above-band broker to a below-floor one: s first, then the next sources.

        A move that lands on a broker already at its floor spends a unit of excess without paying
        off any deficit, which later costs an extra move; so while some broker is below its floor,
        an above-band broker that can reach one goes first. Returns (source, (partition, dest)).
        """
        lay = self.lay
        found = self._best_dest(s, dsts, below_floor=True)
        if found is not None:
            return s, found
        tried: list[tuple[tuple[int, ...], int]] = []
        pick = None
        while srcs:
            k2, s2 = heapq.heappop(srcs)
            if self.count[s2] <= lay.hi[s2] or k2 != self._src_key(s2, lay.hi):
                continue
            f2 = self._best_dest(s2, dsts, below_floor=True)
            if f2 is not None:
                pick = (s2, f2)
                break
            tried.append((k2, s2))
        for item in tried:
            heapq.heappush(srcs, item)
        if pick is not None:
            heapq.heappush(srcs, (key, s))  # s is still above its band; it waits its turn
        return pick

    def _best_dest(self, s: int, heaps: dict[str, list[tuple[tuple[int, ...], int]]], *,
                   below_floor: bool = False) -> tuple[int, int] | None:
        """Most under-target broker with room that can take a replica of s, and the partition.

        One heap per rack: when no partition on s may change rack (the usual one-replica-per-rack
        layout), only s's own rack is searched.
        """
        lay = self.lay
        racks = sorted(heaps) if self.flex[s] else [lay.rack[s]]
        popped: list[tuple[str, tuple[tuple[int, ...], int]]] = []
        found = None
        while found is None:
            best: tuple[tuple[tuple[int, ...], int], str] | None = None
            for r in racks:
                h = heaps.get(r)
                while h and (self.count[h[0][1]] >= lay.hi[h[0][1]] or h[0][0] != self._dst_key(h[0][1])):
                    heapq.heappop(h)  # full, or a stale key (a fresh entry was pushed)
                if h and below_floor and self.count[h[0][1]] >= lay.lo[h[0][1]]:
                    continue  # heaps order by count - floor: nothing below floor left in this rack
                if h and (best is None or h[0] < best[0]):
                    best = (h[0], r)
            if best is None:
                break
            item = heapq.heappop(heaps[best[1]])
            p = self._find(s, item[1])
            if p is None:
                popped.append((best[1], item))
            else:
                found = (p, item[1])
        for r, item in popped:
            heapq.heappush(heaps[r], item)
        return found

    def deficit_phase(self, budget: list[float]) -> None:
        """Fill brokers still below their floor from the most loaded brokers above theirs."""
        lay = self.lay
        dsts = [(self._dst_key(b), b) for b in lay.eligible if self.count[b] < lay.lo[b]]
        srcs: list[tuple[tuple[int, ...], int]] = [(self._src_key(s, lay.lo), s) for s in lay.ids
                                                   if self.count[s] > lay.lo[s]]
        heapq.heapify(dsts)
        heapq.heapify(srcs)
        while dsts and budget[0] > 0:
            key, d = heapq.heappop(dsts)
            if self.count[d] >= lay.lo[d] or key != self._dst_key(d):
                continue
            found = self._best_source(d, srcs)
            if found is None:
                self.stuck.add(d)
                continue
            p, s = found
            self._move(p, s, d)
            budget[0] -= 1
            if self.count[d] < lay.lo[d]:
                heapq.heappush(dsts, (self._dst_key(d), d))
            if self.count[s] > lay.lo[s]:
                heapq.heappush(srcs, (self._src_key(s, lay.lo), s))

    def _best_source(self, d: int, heap: list[tuple[tuple[int, ...], int]]) -> tuple[int, int] | None:
        """Most loaded broker above its floor with a replica d may take, and the partition."""
        lay = self.lay
        popped, found = [], None
        while heap:
            key, s = heapq.heappop(heap)
            if key != self._src_key(s, lay.lo) or self.count[s] <= lay.lo[s] or s == d:
                continue  # stale (a fresh entry exists) or no longer above its floor
            p = self._find(s, d)
            if p is not None:
                found = (p, s)
                break
            popped.append((key, s))
        for item in popped:
            heapq.heappush(heap, item)
        return found

    def _any_dest(self, s: int) -> tuple[int, int] | None:
        for d in sorted(self.lay.eligible, key=self._dst_key):
            p = self._find(s, d)
            if p is not None:
                return p, d
        return None

    def report_unbalanced(self) -> None:
        lay = self.lay
        left = [b for b in lay.removed if self.count.get(b)]
        if left:
            lay.notes.append(f"removed broker(s) {', '.join(map(str, sorted(left)))} still hold "
                             f"{sum(self.count[b] for b in left)} replica(s)")
        off = [b for b in self.unbalanced() if b not in lay.removed]
        if off and self.stuck:
            lay.notes.append("no rack-valid move left for broker(s) " + ", ".join(map(str, sorted(self.stuck)))
                             + "; outside their target band: "
                             + ", ".join(f"{b} ({self.count[b]} vs {lay.lo[b]}-{lay.hi[b]})" for b in off))

    # -- leaders -------------------------------------------------------------------------------

    def balance_leaders(self) -> None:
        """Even out preferred leaders by reordering replica lists along augmenting paths."""
        lay = self.lay
        live = [p for p, reps in enumerate(self.reps) if any(b in self.elig for b in reps)]
        self.led: dict[int, set[int]] = {b: set() for b in lay.ids}
        self.holds: dict[int, set[int]] = {b: set() for b in lay.ids}
        cap = dict.fromkeys(lay.eligible, 0)
        for p in live:
            self.led[self.reps[p][0]].add(p)
            for b in self.reps[p]:
                self.holds[b].add(p)
                if b in cap:
                    cap[b] += 1
        xs = _water_fill(float(len(live)), [lay.weight[b] for b in lay.eligible], [0.0] * len(lay.eligible),
                         [float(cap[b]) for b in lay.eligible])
        lo = dict.fromkeys(lay.ids, 0)
        hi = dict.fromkeys(lay.ids, 0)
        for b, x in zip(lay.eligible, xs, strict=True):
            lo[b], hi[b] = _band(x)
        start = {p: self.reps[p][0] for p in live}
        led = self.led
        self._nb: dict[tuple[bool, int], dict[int, set[int]]] = {}
        stuck: set[int] = set()

        def n(b: int) -> int:
            return len(led[b])

        # brokers above their ceiling push leadership forward to one with room
        while True:
            over = [b for b in lay.ids if n(b) > hi[b] and b not in stuck]
            if not over:
                break
            root = min(over, key=lambda b: (0 if b in lay.removed else 1, hi[b] - n(b), b))
            path = self._bfs(root, lambda b: n(b) < hi[b], lambda b: (n(b) - lo[b], b), forward=True)
            if path is None:
                stuck.add(root)
            else:
                self._transfer(path)
        # brokers below their floor pull leadership from one above its floor
        while True:
            under = [b for b in lay.eligible if n(b) < lo[b] and b not in stuck]
            if not under:
                break
            root = min(under, key=lambda b: (n(b) - lo[b], b))
            path = self._bfs(root, lambda b: n(b) > lo[b], lambda b: (lo[b] - n(b), b), forward=False)
            if path is None:
                stuck.add(root)
            else:
                self._transfer(path)
        changed = sum(1 for p in live if self.reps[p][0] != start[p])
        if changed:
            lay.notes.append(f"leaders: {changed} partition(s) get a new preferred leader by reordering replicas "
                             "(no data moves)")
        if stuck:
            lay.notes.append("leader balance: no reordering helps broker(s) " + ", ".join(map(str, sorted(stuck))))

    def _transfer(self, path: list[tuple[int, int, int]]) -> None:
        """Apply hand-overs (partition, from, to): `to` moves to the front of the replica list."""
        for p, a, b in path:
            self._unlink(p)
            self.led[a].discard(p)
            self.led[b].add(p)
            reps = self.reps[p]
            reps.remove(b)
            reps.insert(0, b)
            self._link(p)

    def _link(self, p: int, sign: bool = True) -> None:
        """Add p to (or, sign False, drop it from) the neighbour maps built so far."""
        reps = self.reps[p]
        leader = reps[0]
        fwd = self._nb.get((True, leader))
        for v in reps[1:]:
            if fwd is not None and v in self.elig:
                _toggle(fwd, v, p, sign)
            bwd = self._nb.get((False, v))
            if bwd is not None:
                _toggle(bwd, leader, p, sign)

    def _unlink(self, p: int) -> None:
        self._link(p, sign=False)

    def _neighbours(self, u: int, forward: bool) -> dict[int, set[int]]:
        """Brokers one hand-over away from u, with the partitions that link them.

        Forward: followers (eligible) of partitions u leads — u may hand them leadership.
        Backward: leaders of partitions u follows — they may hand leadership to u.
        Built on first use, then kept current by `_transfer`.
        """
        key = (forward, u)
        got = self._nb.get(key)
        if got is None:
            got = {}
            if forward:
                for p in self.led[u]:
                    for v in self.reps[p][1:]:
                        if v in self.elig:
                            got.setdefault(v, set()).add(p)
            else:
                for p in self.holds[u]:
                    v = self.reps[p][0]
                    if v != u:
                        got.setdefault(v, set()).add(p)
            self._nb[key] = got
        return got

    def _bfs(self, root: int, goal: Callable[[int], bool], rank: Callable[[int], tuple[int, int]], *,
             forward: bool) -> list[tuple[int, int, int]] | None:
        """Shortest chain of leadership hand-overs from `root` (forward) or to `root` (backward).

        Returns [(partition, from_broker, to_broker), ...]; intermediate brokers gain one leadership
        and lose one, so only the two ends change count.
        """
        parent: dict[int, int] = {root: root}
        level = [root]
        while level:
            nxt: list[int] = []
            for u in level:
                for v in sorted(self._neighbours(u, forward)):
                    if v not in parent:
                        parent[v] = u
                        nxt.append(v)
            hits = [v for v in nxt if goal(v)]
            if hits:
                v = min(hits, key=rank)
                chain: list[tuple[int, int, int]] = []
                while v != root:
                    u = parent[v]
                    p = min(self._neighbours(u, forward)[v])
                    chain.append((p, u, v) if forward else (p, v, u))
                    v = u
                return chain
            # an intermediate broker gains a leadership, which a removed broker may not
            level = [v for v in nxt if v in self.elig]
        return None

    # -- result --------------------------------------------------------------------------------

    def proposal(self, bound: int) -> Proposal:
        lay = self.lay
        moves: list[Move] = []
        target: dict[tuple[str, int], tuple[int, ...]] = {}
        order = sorted(range(len(lay.keys)), key=lambda i: lay.keys[i])
        replica_moves = bytes_total = 0
        for p in order:
            after = tuple(self.reps[p])
            target[lay.keys[p]] = after
            before = lay.before[p]
            if after != before:
                added = len(set(after) - set(before))
                replica_moves += added
                bytes_total += added * lay.size[p]
                moves.append(Move(lay.keys[p][0], lay.keys[p][1], before, after, added * lay.size[p]))
        held = {b for reps in lay.before for b in reps}
        new = [b for b in lay.eligible if b not in held]
        notes = []
        if new:
            notes.append(f"scale-out: new broker(s) {', '.join(map(str, new))}")
        if lay.removed & set(lay.ids):
            notes.append(f"scale-in: evacuating broker(s) {', '.join(map(str, sorted(lay.removed & set(lay.ids))))}")
        notes.append(f"{replica_moves} replica move(s), lower bound {bound}")
        return Proposal(moves=tuple(moves), target=target, replica_moves=replica_moves, lower_bound=bound,
                        bytes_to_move=bytes_total, notes=tuple(notes + lay.notes))
