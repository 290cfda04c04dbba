"""The label store: every structure sent to the oracle and what came back.

An SQLite database through :mod:`ase.db`, one row per structure, keyed by
its content hash so that no structure is labelled twice. A row is written
``queued`` before its calculation starts and updated the moment its label
arrives: ``ok`` rows carry energy, forces (and stress) as calculator
results, which :func:`mlipkit.data.io.read_db` and ``mlipkit train`` read
directly (``selection="status=ok"``); ``failed`` rows carry the error and
are retried until their tries reach the limit, and are never trained on;
a later run may give them tries anew (:meth:`LabelStore.requeue_failed`).

Row keys: ``hash``, ``status`` (queued | ok | failed), ``round``,
``origin`` (seed, explore, test, ...), ``attempts`` (all calls on the row),
``retried_from`` (``attempts`` when its tries were last renewed), and after a call
``oracle`` (import path), ``wall_s``, ``converged`` (where the code has an
SCF) and ``error``; ``data["oracle"]`` holds the oracle's full settings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import ase.db
import ase.io
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from mlipkit.active.oracles import Label, Oracle, structure_hash
from mlipkit.data.batch import Batch
from mlipkit.data.io import read_db

STATUSES = ("queued", "ok", "failed")
TRAINING_ORIGINS = ("seed", "explore")  # the labels a committee trains on


def _tries(row) -> int:
    return int(row.attempts) - int(row.get("retried_from", 0))


class LabelStore:
    """The label database at ``path`` (created when missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # SQLite locks by itself; ASE's extra lock file would outlive a kill -9 and block
        self.db = ase.db.connect(str(self.path), type="db", use_lock_file=False)

    def __len__(self) -> int:
        return self.db.count()

    def ids(self, hashes: Sequence[str]) -> list[int | None]:
        """Row id of each hash, None where the structure is not in the store."""
        out = []
        for key in hashes:
            rows = list(self.db.select(hash=key, include_data=False, limit=1))
            out.append(rows[0].id if rows else None)
        return out

    def add(self, structures: Sequence[Atoms], origin: str, round: int = 0) -> list[int]:
        """Queue structures for labelling (one transaction) and return their
        row ids; a structure already in the store keeps its row and status."""
        hashes = [structure_hash(a) for a in structures]
        ids = self.ids(hashes)
        with self.db:
            for k, (atoms, key) in enumerate(zip(structures, hashes)):
                if ids[k] is None:
                    plain = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
                    ids[k] = self.db.write(plain, hash=key, status="queued", origin=origin,
                                           round=int(round), attempts=0, retried_from=0)
                    for j in range(k + 1, len(hashes)):  # a duplicate within this call
                        if hashes[j] == key and ids[j] is None:
                            ids[j] = ids[k]
        return ids

    def pending(self, max_attempts: int) -> list[tuple[int, Atoms]]:
        """(row id, structure) of queued rows and of failed rows with fewer
        than ``max_attempts`` tries, in row order."""
        rows = [row for row in self.db.select(status="queued")]
        rows += [row for row in self.db.select(status="failed") if _tries(row) < max_attempts]
        return [(row.id, row.toatoms()) for row in sorted(rows, key=lambda r: r.id)]

    def record(self, row_id: int, label: Label, oracle: Oracle) -> None:
        """Store an oracle call's outcome in its row (committed at once)."""
        row = self.db.get(id=row_id)
        if label.hash != row.hash:
            raise ValueError(f"label for structure {label.hash[:12]} does not belong to row "
                             f"{row_id} ({row.hash[:12]})")
        settings = oracle.settings
        common = {"attempts": int(row.attempts) + 1, "oracle": settings["calculator"],
                  "wall_s": float(label.wall_s)}
        stale = ["converged"] if label.converged is None else []
        if label.converged is not None:
            common["converged"] = bool(label.converged)
        if label.ok:
            atoms = row.toatoms()
            results = {"energy": label.energy, "forces": label.forces}
            if label.stress is not None:
                results["stress"] = label.stress
            atoms.calc = SinglePointCalculator(atoms, **results)
            self.db.update(row_id, atoms=atoms, delete_keys=["error", *stale],
                           data={"oracle": settings}, status="ok", **common)
        else:
            self.db.update(row_id, delete_keys=stale, data={"oracle": settings}, status="failed",
                           error=(label.error or "unknown error")[:2000], **common)

    def requeue_failed(self, max_attempts: int) -> int:
        """Give every structure that used up its ``max_attempts`` tries as
        many again (a new run, e.g. after the oracle was fixed); returns how
        many. ``attempts`` keeps counting every call."""
        rows = [(r.id, r.attempts) for r in self.db.select(status="failed", include_data=False)
                if _tries(r) >= max_attempts]
        with self.db:
            for row_id, attempts in rows:
                self.db.update(row_id, retried_from=int(attempts))
        return len(rows)

    def counts(self, round: int | None = None) -> dict[str, int]:
        """Rows per status (all rounds, or one)."""
        selection = {} if round is None else {"round": int(round)}
        counter = Counter(row.status for row in self.db.select(**selection))
        return {s: counter.get(s, 0) for s in STATUSES}

    def failures(self, round: int | None = None) -> list[dict]:
        """id, hash, attempts, tries (since they were last renewed) and error
        of each failed row."""
        selection = {"status": "failed"} | ({} if round is None else {"round": int(round)})
        return [{"id": r.id, "hash": r.hash, "attempts": r.attempts, "tries": _tries(r),
                 "error": r.error}
                for r in self.db.select(**selection)]

    def _ok_rows(self, origins: Sequence[str] | None, max_round: int | None):
        return [row for row in self.db.select(status="ok")
                if (origins is None or row.origin in origins)
                and (max_round is None or row.round <= max_round)]

    def labelled(self, origins: Sequence[str] | None = None,
                 max_round: int | None = None) -> list[Batch]:
        """The ``ok`` rows (of the given origins, up to a round) as labelled
        Batches, in row order."""
        keep = {row.id for row in self._ok_rows(origins, max_round)}
        if not keep:
            return []
        # read_db gives the ok rows in row-id order, as the sorted ids are
        batches = read_db(self.path, require=("energy", "forces"), selection="status=ok")
        ids = sorted(row.id for row in self.db.select(status="ok", include_data=False))
        return [b for b, row_id in zip(batches, ids) if row_id in keep]

    def counts_ok(self, origins: Sequence[str] | None = None,
                  max_round: int | None = None) -> int:
        """Labelled (``ok``) rows of the given origins, up to a round."""
        return len(self._ok_rows(origins, max_round))

    def calls(self, origins: Sequence[str] | None = None, max_round: int | None = None) -> int:
        """Oracle calls made on rows of the given origins (up to a round),
        failed attempts included."""
        return sum(int(row.attempts) for row in self.db.select(include_data=False)
                   if (origins is None or row.origin in origins)
                   and (max_round is None or row.round <= max_round))

    def export_extxyz(self, path: str | Path, origins: Sequence[str] | None = None,
                      max_round: int | None = None) -> int:
        """Write the ``ok`` rows (of the given origins, up to a round) to
        extxyz, for training and for other codes; returns the count."""
        frames = []
        for row in self._ok_rows(origins, max_round):
            atoms = row.toatoms()
            atoms.info.update(hash=row.hash, origin=row.origin, round=row.round)
            frames.append(atoms)
        ase.io.write(str(path), frames, format="extxyz")
        return len(frames)
