"""What the datasets share: official archives (checked, downloaded, extracted), messages
that say where to get the files, and class-folder listings."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from spikeflow.data.cache import atomic_write_bytes
from spikeflow.data.datasets.base import DatasetNotFoundError
from spikeflow.data.download import check_integrity, download_url, extract_archive, move_into
from spikeflow.errors import ConfigurationError, DataFormatError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock, extraction is not guarded
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DOWNLOAD_ADVICE",
    "Archive",
    "augment_policy",
    "check_class_folders",
    "class_folder_samples",
    "files_not_found",
    "listed_names",
    "listing_text",
    "prepare_dataset_root",
    "prepare_root",
    "shown_path",
    "subset_by_ratio",
]


def listing_text(path: Path) -> str:
    """The text of a dataset's listing or label file (a UTF-8 byte-order mark dropped).

    Raises:
        DataFormatError: the file is not UTF-8 text (naming the byte offset), where
            ``read_text`` raised a bare UnicodeDecodeError (or, with the locale's
            encoding, read other names).
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path}: byte offset {exc.start}: not UTF-8 text "
            f"({raw[exc.start : exc.start + 4]!r}: {exc.reason})"
        ) from None
    return text.removeprefix("\ufeff")


def listed_names(path: Path) -> list[str]:
    """The names a split listing holds (``trials_to_train.txt``, ``train_files.txt``):
    its non-blank lines, stripped.

    Raises:
        DataFormatError: the file is not UTF-8 text (:func:`listing_text`).
    """
    return [line.strip() for line in listing_text(path).splitlines() if line.strip()]


def augment_policy(owner: str, augment: object, policies: Sequence[str]) -> str | None:
    """The training augmentation ``augment`` picks from a dataset's ``policies`` (its
    ``augment_policies``): ``True`` is ``"standard"``, ``False`` none (``None``), a name
    of ``policies`` itself. The one check of the image datasets' ``augment`` and of
    ``spikeflow train --dataset-kwargs augment=...``, so both word a bad value alike.

    Raises:
        ConfigurationError: ``augment`` is neither a bool nor one of ``policies``
            (``owner`` names the dataset).
    """
    if isinstance(augment, bool | np.bool_):
        return "standard" if augment else None
    if isinstance(augment, str) and augment in policies:
        return augment
    names = ", ".join(repr(n) for n in policies)
    raise ConfigurationError(
        f"{owner}: augment must be True, False (true, false on the command line) or one of "
        f"{names}; got {augment!r}"
    )


def auto_augment_name(
    owner: str, auto_augment: object, augment: str | None, policies: Sequence[str]
) -> str | None:
    """The image datasets' ``auto_augment`` checked: None, or a name of
    :data:`~spikeflow.data.image_autoaugment.AUTO_AUGMENT_NAMES`, which runs within the
    training augmentation ``augment`` (the resolved policy of ``policies``; None: off).

    Raises:
        ConfigurationError: an unknown name (the message lists them), or a policy with
            ``augment`` off (``owner`` names the dataset).
    """
    from spikeflow.data.image_autoaugment import AUTO_AUGMENT_NAMES

    if auto_augment is None:
        return None
    if not isinstance(auto_augment, str) or auto_augment not in AUTO_AUGMENT_NAMES:
        names = ", ".join(repr(n) for n in AUTO_AUGMENT_NAMES)
        raise ConfigurationError(
            f"{owner}: auto_augment must be None or one of {names}; got {auto_augment!r}"
        )
    if augment is None:
        names = ", ".join(repr(n) for n in policies)
        raise ConfigurationError(
            f"{owner}: auto_augment={auto_augment!r} runs within the training augmentation "
            f"(after its crop and flip): it needs augment True or one of {names}; got "
            "augment=False"
        )
    return auto_augment


def random_erase_probability(owner: str, random_erase: object, augment: str | None) -> float | None:
    """The image datasets' ``random_erase`` checked: None (the dataset's own: ``"psn"``'s
    0.1, else none) or a probability in [0, 1] of
    :class:`~spikeflow.data.image_augment.RandomErasing` as the last training step; a
    positive one runs within the training augmentation ``augment`` (None: off).

    Raises:
        ConfigurationError: not a real number in [0, 1], or a positive probability with
            ``augment`` off (``owner`` names the dataset).
    """
    from spikeflow._checks import check_real

    if random_erase is None:
        return None
    p = check_real(f"{owner}: random_erase", random_erase, 0.0, 1.0)
    if p > 0 and augment is None:
        raise ConfigurationError(
            f"{owner}: random_erase={p:g} runs within the training augmentation (its last "
            "step): it needs augment on; got augment=False"
        )
    return p


@dataclass(frozen=True)
class Archive:
    """One official archive of a dataset.

    Attributes:
        name: its file name, looked for (or downloaded to) directly under ``root``.
        md5: its MD5, checked before extraction (``None``: the host repacks the file,
            so it has no stable checksum).
        url: where a program may download it from; ``None`` when the host needs a
            manual download.
        nested: the archive holds further archives (e.g. one zip per class) that are
            extracted into ``root`` in turn.
        inner_folders: with ``nested``, each inner archive ``<stem>.zip`` is extracted
            into its own folder ``root/<stem>/`` instead of ``root`` (HARDVS: inner
            ``action_<nnn>.zip`` files holding flat ``<sample>.npz`` files).
        into: extract into ``root/<into>/`` instead of ``root`` (an archive whose
            members sit at its top, e.g. Speech Commands' test set).
    """

    name: str
    md5: str | None
    url: str | None = None
    nested: bool = False
    inner_folders: bool = False
    into: str | None = None


#: How a dataset's message starts its advice to download (``download=True``); the
#: command line (:mod:`spikeflow.training.data`) puts its own option in its place.
DOWNLOAD_ADVICE = "Pass download=True"


def shown_path(path: Path) -> str:
    """``path`` in a message: as given, followed by its absolute form when it is
    relative (a relative path alone does not say which folder was searched)."""
    path = Path(path)
    return str(path) if path.is_absolute() else f"{path} (absolute: {path.resolve()})"


def how_to_get(
    title: str, root: Path, archives: Sequence[Archive], homepage: str, layout: str
) -> str:
    """The part of an error message that says where to get the files and where to put
    them (``root``, absolute too when relative: :func:`shown_path`)."""
    names = ", ".join(a.name for a in archives)
    where = shown_path(root)
    if archives and all(a.url for a in archives):
        urls = " ".join(str(a.url) for a in archives)
        checked = "MD5-checked, resumable" if all(a.md5 for a in archives) else "resumable"
        return (
            f"{DOWNLOAD_ADVICE} to download {names} ({checked}) from {urls} "
            f"into {where}, or download them yourself (see {homepage}) and put them there; "
            f"spikeflow checks and extracts them there on first use. Expected layout: {layout}"
        )
    if not archives:  # files with no archive of record (N-CARS' web form, ES-ImageNet's RAR)
        return (
            f"{title} cannot be downloaded automatically: its host needs a manual download. "
            f"Open {homepage}, get the files and put them, extracted, in {where}. "
            f"Expected layout: {layout}"
        )
    checked = all(a.md5 for a in archives)  # a host that repacks its files has no MD5
    return (
        f"{title} cannot be downloaded automatically: its host needs a manual download. "
        f"Open {homepage}, download {names or 'the files'} and put them in {where}; "
        f"spikeflow {'checks (MD5) and extracts' if checked else 'extracts'} them there "
        f"on first use. Or extract them yourself. Expected layout: {layout}"
    )


def _extract(archive: Path, root: Path, spec: Archive) -> None:
    if spec.into is not None:
        root = root / spec.into
    if not spec.nested:
        extract_archive(archive, root)
        return
    staging = root / f".{archive.name}.inner"
    if staging.exists():
        shutil.rmtree(staging)
    try:
        extract_archive(archive, staging)
        inner = sorted(p for p in staging.rglob("*") if p.is_file() and p.suffix == ".zip")
        if not inner:
            raise DataFormatError(f"{archive}: expected archives inside it, found none")
        for sub in inner:
            extract_archive(sub, root / sub.stem if spec.inner_folders else root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


#: Prefix of the per-extraction staging folders (``tempfile.mkdtemp`` in the root).
_STAGING = ".spikeflow-extracting"
#: The lock file in the root, held (``flock``) while a process checks and extracts.
LOCK_FILE = ".spikeflow.lock"
#: What a completion marker holds once the extracted tree is whole.
_COMPLETE = "complete"


def marker_path(root: Path, archives: Sequence[Archive]) -> Path:
    """The completion marker of extracting ``archives`` into ``root``.

    The rule: a dataset folder with no marker was not extracted by this code (older
    spikeflow, or by hand) and is trusted as it is; a marker holding ``"complete"``
    (written last) means the extraction finished; any other content (``"extracting"``,
    written before the first file moves into ``root``) means it was killed part way,
    so the folder is incomplete and is extracted again.
    """
    return root / f".spikeflow-extracted-{'+'.join(a.name for a in archives)}"


def _interrupted(marker: Path) -> bool:
    """True when ``marker`` exists and does not say the extraction completed."""
    try:
        return marker.read_text().strip() != _COMPLETE
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _root_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``root/.spikeflow.lock``; another process (a DDP
    rank, a second job on a shared root) waits here until the holder is done."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK_FILE, "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield  # closing the file releases the lock (also when the process dies)


def _extract_all(archives: Sequence[Archive], root: Path, marker: Path) -> None:
    """Extract every archive into a fresh staging folder under ``root``, then rename
    its contents into ``root``. Call with the root lock held.

    Staging folders found here were left by a killed process (a live one would hold
    the lock) and are removed. The marker says ``"extracting"`` before the first rename
    and ``"complete"`` after the last, so a tree left part-moved is detected later.
    """
    for stale in root.glob(f"{_STAGING}*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f"{_STAGING}-"))
    try:
        for a in archives:
            _extract(root / a.name, staging, a)
        atomic_write_bytes(marker, b"extracting\n")
        move_into(staging, root)
        atomic_write_bytes(marker, _COMPLETE.encode() + b"\n")  # last: the tree is whole
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _unfetchable(archives: Sequence[Archive], root: Path, download: bool) -> bool:
    """True when an archive is missing from ``root`` and cannot or may not be downloaded."""
    missing = [a for a in archives if not (root / a.name).is_file()]
    return bool(missing or not archives) and not (download and all(a.url for a in missing))


def _not_found(
    title: str, root: Path, target: Path, archives: Sequence[Archive], advice: str,
    incomplete: bool,
) -> DatasetNotFoundError:  # fmt: skip
    if incomplete:
        return DatasetNotFoundError(
            f"{title}: {shown_path(target)} is incomplete (an extraction was interrupted; see "
            f"{marker_path(root, archives)}) and the archives needed to extract it again "
            f"are missing. {advice}"
        )
    return DatasetNotFoundError(f"{title} not found: {shown_path(target)} does not exist. {advice}")


def _fetch_and_check(archives: Sequence[Archive], root: Path, homepage: str) -> None:
    """Download the missing archives into ``root``, then check every archive's MD5."""
    for a in archives:
        if not (root / a.name).is_file():
            assert a.url is not None
            download_url(a.url, root / a.name, md5=a.md5)
    for a in archives:
        path = root / a.name
        if a.md5 is not None and not check_integrity(path, md5=a.md5):
            raise DataFormatError(
                f"{path}: MD5 differs from the official archive's ({a.md5}); it is incomplete "
                f"or not the official file. Download it again (see {homepage})"
            )


def prepare_root(
    title: str,
    root: Path,
    target: Path,
    archives: Sequence[Archive],
    *,
    download: bool,
    homepage: str,
    layout: str,
    check: Callable[[], bool] | None = None,
) -> None:
    """Make ``target`` exist under ``root`` from the official archives.

    Nothing happens when ``target`` exists (or ``check()`` is true, when given; then
    ``target`` only names the expected place in messages) and no completion marker
    (:func:`marker_path`) says an earlier extraction was interrupted. Otherwise, with
    an exclusive lock on ``root/.spikeflow.lock`` held (concurrent processes wait, then
    find the work done), each archive must be in ``root`` (downloaded there first when
    ``download`` and it has a URL), match its MD5, and is extracted into ``root`` with
    :func:`~spikeflow.data.download.extract_archive` through a per-process staging
    folder, the completion marker written last.

    Raises:
        DatasetNotFoundError: an archive is missing (and cannot or may not be
            downloaded); the message names ``target``, the URLs and where to put files.
        DataFormatError: an archive's MD5 differs, or ``target`` is still missing
            after extraction.
    """
    exists = check if check is not None else target.exists
    marker = marker_path(root, archives)

    def ready() -> bool:
        return exists() and not _interrupted(marker)

    if ready():
        return
    advice = how_to_get(title, root, archives, homepage, layout)
    if _unfetchable(archives, root, download):  # nothing to lock or extract
        raise _not_found(title, root, target, archives, advice, exists())
    with _root_lock(root):
        if ready():  # another process extracted it while this one waited
            return
        if _unfetchable(archives, root, download):
            raise _not_found(title, root, target, archives, advice, exists())
        _fetch_and_check(archives, root, homepage)
        _extract_all(archives, root, marker)
    if not exists():
        raise DataFormatError(
            f"{title}: extracted {', '.join(a.name for a in archives)} into {root} but {target} "
            f"did not appear. Expected layout: {layout}"
        )


class PublishedDataset(Protocol):
    """What :func:`prepare_dataset_root` and :func:`files_not_found` read from a dataset:
    its folder, where it is published and the layout of its files under ``root``."""

    root: Path
    homepage: str
    layout: str


def prepare_dataset_root(
    dataset: PublishedDataset,
    title: str,
    target: Path,
    archives: Sequence[Archive],
    *,
    download: bool,
    check: Callable[[], bool] | None = None,
) -> None:
    """:func:`prepare_root` in ``dataset.root``, its messages naming ``dataset.homepage``
    and ``dataset.layout``."""
    prepare_root(
        title, dataset.root, target, archives, download=download,
        homepage=dataset.homepage, layout=dataset.layout, check=check,
    )  # fmt: skip


def files_not_found(
    dataset: PublishedDataset, title: str, problem: str, archives: Sequence[Archive]
) -> DatasetNotFoundError:
    """The error for files of ``dataset`` that are not there: ``"<title>: <problem>. "``,
    then where to get them and where to put them (:func:`how_to_get`)."""
    advice = how_to_get(title, dataset.root, archives, dataset.homepage, dataset.layout)
    return DatasetNotFoundError(f"{title}: {problem}. {advice}")


def first_names(names: Sequence[str], most: int = 5) -> str:
    """``names`` in a message: the first ``most`` as the sequence prints them, then
    ``...`` when there are more."""
    return f"{names[:most]}{'...' if len(names) > most else ''}"


def names_difference(official: Iterable[str], found: Iterable[str]) -> str:
    """``"missing [...], unexpected [...]"`` for a message: the names of ``official`` not
    in ``found`` and those of ``found`` not in ``official``, sorted (:func:`first_names`)."""
    official, found = set(official), set(found)
    return (
        f"missing {first_names(sorted(official - found))}, "
        f"unexpected {first_names(sorted(found - official))}"
    )


def check_class_folders(
    folder: Path, official: Sequence[str], what: str, ignore: Sequence[str] = ()
) -> tuple[str, ...]:
    """The sorted names of the sub-folders of ``folder`` (less those in ``ignore``),
    checked against ``official`` (the dataset's class names; labels are indices in
    sorted order).

    Raises:
        DataFormatError: the folder names differ from ``official``; the message names
            ``folder`` and the missing and unexpected names.
    """
    found = tuple(sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in ignore))
    if found != tuple(sorted(official)):
        raise DataFormatError(
            f"{folder}: expected the {len(official)} official {what} folders, found "
            f"{len(found)}; {names_difference(official, found)}. The extraction is "
            "incomplete or this is not the official release"
        )
    return found


def class_folder_samples(
    folder: Path, classes: Sequence[str], pattern: str
) -> list[tuple[Path, int]]:
    """``(file, label)`` for ``folder/<class>/<pattern>``, label = index in ``classes``,
    sorted by label then file name.

    Returns ``[]`` when no class folder exists (the caller says where to get the data).

    Raises:
        DataFormatError: some class folders, not all, are missing: an incomplete
            extraction, which would otherwise train on fewer classes without a word.
    """
    samples: list[tuple[Path, int]] = []
    absent = []
    for label, name in enumerate(classes):
        sub = folder / name
        if not sub.is_dir():
            absent.append(name)
            continue
        samples += [(p, label) for p in sorted(sub.glob(pattern)) if p.is_file()]
    if absent and len(absent) < len(classes):
        raise DataFormatError(
            f"{folder}: class folder(s) {first_names(absent)} are missing ({len(absent)} of "
            f"{len(classes)}); the extraction is incomplete"
        )
    return samples


def subset_by_ratio(
    samples: list[tuple[Path, int]], train: bool | None, train_ratio: float
) -> list[tuple[Path, int]]:
    """The deterministic per-class split of SpikingJelly's ``split_to_train_test_set``
    (``random_split=False``): in each class, in the given order, the first
    ``ceil(n * train_ratio)`` samples are the training split and the rest the test
    split; ``train=None`` keeps every sample."""
    if train is None:
        return samples
    by_class: dict[int, list[tuple[Path, int]]] = {}
    for s in samples:
        by_class.setdefault(s[1], []).append(s)
    out: list[tuple[Path, int]] = []
    for label in sorted(by_class):
        items = by_class[label]
        cut = -(-len(items) * round(train_ratio * 10**6) // 10**6)
        out += items[:cut] if train else items[cut:]
    return out


def select_names(
    owner: str, value: Any, known: Collection[str], what: str, unknown: str
) -> list[str]:
    """The names ``value`` picks from ``known``: all of them for ``"all"``, else the one
    name or the non-empty list or tuple of names, each checked against ``known``.
    Errors name ``owner`` and ``what`` (``"recording"``); an unknown name ``n`` gives
    ``"{owner}: {n!r} is not {unknown}"``."""
    if value == "all":
        return list(known)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not names:
        raise ConfigurationError(
            f"{owner}: {what} must be 'all', a name or a list of names; got {value!r}"
        )
    for n in names:
        if n not in known:
            raise ConfigurationError(f"{owner}: {n!r} is not {unknown}")
    return list(names)
