"""Adding a form: read its definition from KoBo and write config/forms/<slug>.yaml for review."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import yaml

from config import ConfigError, slugify
from connectors import FormNotFound, KoboClient
from transforms import to_form_schema
from transforms.privacy import suggest_policy

log = logging.getLogger("kobo_etl.forms")


_VERSION_UID = re.compile(r"[A-Za-z0-9_-]{1,100}")


def fetch_versions(client: KoboClient, asset_uid: str, cache_dir: Path | None = None) -> dict[str, dict]:
    """Content of every deployed version, newest first; cached on disk (a deployed version never changes)."""
    versions: dict[str, dict] = {}
    for item in client.iter_deployed_versions(asset_uid):
        # the uid names a file: only one KPI could have made (a uid like `../x` would write outside the cache)
        safe = _VERSION_UID.fullmatch(str(item["uid"])) is not None
        cached = cache_dir / f"{item['uid']}.json" if cache_dir is not None and safe else None
        if cached is not None and cached.exists():
            versions[item["uid"]] = json.loads(cached.read_text(encoding="utf-8"))
            continue
        try:
            content = client.get_version(asset_uid, item["uid"]).get("content") or {}
        except FormNotFound:
            # seen on servers where an old version was purged: its submissions are read with the newest one
            log.warning(
                "%s: version %s could not be read; using the newest version for it", asset_uid, item["uid"]
            )
            continue
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
        versions[item["uid"]] = content
    return versions


def render_form_yaml(asset: dict, slug: str, policy_yaml: str) -> str:
    """The YAML an IM officer reviews: identity, schedule, sync options and the suggested policy."""
    name = str(asset.get("name") or slug)
    indented = "\n".join(("  " + line) if line.strip() else "" for line in policy_yaml.splitlines())
    # the name and uid come from the server: quoted as JSON strings (valid YAML), and the comment on one line,
    # so that a name with a line break or a backslash can neither add settings nor break the file
    return (
        f"# Form {' '.join(name.split())!r} — written by `kobo-etl add-form`. "
        "Review the privacy policy before the first sync.\n"
        f"slug: {slug}\n"
        f"asset_uid: {json.dumps(str(asset['uid']))}\n"
        f"name: {json.dumps(name)}\n"
        "schedule:\n"
        '  cron: "0 */6 * * *"     # every 6 hours; edit, then run `kobo-etl schedule`\n'
        "  timezone: UTC\n"
        "sync:\n"
        "  page_size: 1000\n"
        "  deletions: delete        # or `soft`: keep deleted submissions, marked with _deleted_at\n"
        "privacy:\n"
        f"{indented}\n"
    )


def configs_of_form(forms_dir: Path, asset_uid: str) -> list[Path]:
    """The YAML files in `forms_dir` whose `asset_uid` is this form's (a broken file is skipped: loading
    the forms reports it)."""
    found = []
    for path in sorted(forms_dir.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and data.get("asset_uid") == asset_uid:
            found.append(path)
    return found


def add_form(
    client: KoboClient, forms_dir: Path, asset_uid: str, slug: str | None = None, *, force: bool = False
) -> Path:
    """Write `<forms_dir>/<slug>.yaml` for the asset, with a suggested privacy policy, and return the path.

    Raises:
        ConfigError: The file exists, or another file already configures the form, and `force` is False:
            a reviewed file holds privacy decisions, a DPIA reference and a schedule that a rewrite would
            lose, and a second file would sync the same form into a second schema.
    """
    asset = client.get_asset(asset_uid)
    slug = slug or slugify(asset.get("name") or asset_uid)
    path = forms_dir / f"{slug}.yaml"
    if path.exists() and not force:
        raise ConfigError(
            f"{path} already exists and may hold reviewed privacy decisions, a dpia_ref and a schedule; "
            "edit it by hand, or run add-form again with --force to replace it with a fresh suggestion"
        )
    if others := [p for p in configs_of_form(forms_dir, asset_uid) if p != path]:
        duplicate = (f"form {asset_uid} is already configured in {', '.join(map(str, others))}; a second "
                     "file syncs it twice, into two schemas")
        if not force:
            raise ConfigError(f"{duplicate}. Edit that file, or run add-form again with --force")
        log.warning("%s: remove the file you do not want", duplicate)
    schema = to_form_schema(asset, fetch_versions(client, asset_uid), slug)
    forms_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(render_form_yaml(asset, slug, suggest_policy(schema)), encoding="utf-8")
    return path
