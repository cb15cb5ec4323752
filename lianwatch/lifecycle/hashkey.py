"""The key of the phone-number hash: one per install, never a public default.

The ``notifications`` table keeps a number only masked (``138****0012``) and as
an HMAC, so that notices to one person can be grouped and deduplicated. Mainland
mobile numbers are few (about 10⁹): with a known key every hash is reversed in
seconds, so the key must be secret and differ between installs. It comes from,
first match:

1. ``LIANWATCH_NOTIFY_PHONE_HASH_KEY`` (at least 32 characters): what every process
   of an install shares when the store is a ClickHouse server (worker, CLI, hosts);
2. the embedded store's directory: ``phone-hash.key``, 32 random bytes (hex)
   created with the store on first use, mode 0600, read ever after (so a restart
   hashes as before and notices are not sent twice);
3. nothing: a server store without the variable is refused (a key in the server's
   own tables would be readable by whoever can read the hashes).

The old built-in default ``lianwatch-phone`` is refused wherever it comes from.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from lianwatch.errors import ConfigError

__all__ = ["KEY_FILE", "MIN_KEY_LEN", "PUBLIC_KEYS", "phone_hash_key"]

log = logging.getLogger("lianwatch.notify")

KEY_FILE = "phone-hash.key"
MIN_KEY_LEN = 32
#: keys that were ever public (the built-in default before this module)
PUBLIC_KEYS = frozenset({"lianwatch-phone"})
_ENV = "LIANWATCH_NOTIFY_PHONE_HASH_KEY"


def _check(key: str, where: str) -> str:
    if key in PUBLIC_KEYS:
        raise ConfigError(f"{where}: the phone hash key is the public default; set a secret "
                          f"one (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
    if len(key) < MIN_KEY_LEN:
        raise ConfigError(f"{where}: the phone hash key has {len(key)} characters; use at least "
                          f"{MIN_KEY_LEN} random ones")
    return key


def _key_file(store_dir: Path) -> str:
    path = store_dir / KEY_FILE
    store_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("%s was readable by others (mode %o): made 0600", path, mode)
        return _check(path.read_text(encoding="ascii").strip(), str(path))
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_hex(32) + "\n")
    log.info("created the install's phone hash key %s (mode 0600)", path)
    return _check(path.read_text(encoding="ascii").strip(), str(path))


def phone_hash_key(configured: str = "", store_dir: str | Path | None = None) -> str:
    """The install's key: ``configured`` (the environment's) if set, else the key file of
    the embedded store at ``store_dir`` (created on first use). Raises
    :class:`~lianwatch.errors.ConfigError` when there is neither, or a key is unusable."""
    if configured:
        return _check(configured, _ENV)
    if store_dir is None:
        raise ConfigError(f"{_ENV} is not set: a store on a ClickHouse server needs a secret phone "
                          f"hash key shared by every process that notifies (at least "
                          f"{MIN_KEY_LEN} random characters)")
    return _key_file(Path(store_dir))
