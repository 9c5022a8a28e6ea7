"""The per-form privacy policy (`privacy:` in `config/forms/<slug>.yaml`) as typed models.

The policy is data only; `transforms.privacy` applies it. Users write rules either in full
(`phone: {action: pseudonymise, normalise: phone}`) or as a bare action (`comments: drop`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Action = Literal[
    "keep", "drop", "pseudonymise", "generalise", "top_code", "bottom_code", "round_gps", "redact"
]
Normaliser = Literal["phone", "name", "id", "none"]

# Spellings people will type; mapped to the canonical action so YAML written from the notes still loads.
_ACTION_ALIASES = {
    "pseudonymize": "pseudonymise",
    "hmac": "pseudonymise",
    "generalize": "generalise",
    "truncate_date": "generalise",
    "redact_free_text": "redact",
    "topcode": "top_code",
    "bottomcode": "bottom_code",
}

#: KoBo metadata that has a default action even when the policy does not mention it (see docs/privacy.md).
#: Keys are the data keys (`_validation_status.by_whom` is the nested field); values are the default rule.
METADATA_DEFAULTS: dict[str, dict[str, Any]] = {
    "_submitted_by": {"action": "pseudonymise"},
    "_validation_status.by_whom": {"action": "pseudonymise"},
    "username": {"action": "pseudonymise"},
    "_geolocation": {"action": "round_gps", "decimals": 2},
    # keep = uid, mimetype, question_xpath, is_deleted only; names/URLs never kept
    "_attachments": {"action": "keep"},
    "_notes": {"action": "drop"},
    "_tags": {"action": "drop"},
    "_supplementalDetails": {"action": "drop"},
    "deviceid": {"action": "drop"},
    "phonenumber": {"action": "drop"},
    "simserial": {"action": "drop"},
    "subscriberid": {"action": "drop"},
    "imei": {"action": "drop"},
    "meta/audit": {"action": "drop"},
    "meta/instanceName": {"action": "drop"},  # instance names are usually built from respondent names
    "start": {"action": "keep"},
    "end": {"action": "keep"},
    "today": {"action": "keep"},
}


class QuestionRule(BaseModel):
    """What to do with one question's answers (or one metadata field)."""

    model_config = ConfigDict(extra="forbid")

    action: Action
    normalise: Normaliser | None = None  # pseudonymise: how to normalise before hashing
    bands: list[float] | None = None  # generalise numbers: lower bounds, strictly increasing
    labels: list[str] | None = None  # generalise numbers: one label per band
    to: Literal["month", "year"] | None = None  # generalise dates
    max: float | None = None  # top_code
    min: float | None = None  # bottom_code
    decimals: int | None = Field(default=None, ge=0, le=6)  # round_gps (default 2 ≈ 1.1 km)
    mode: Literal["replace", "drop"] = "replace"  # redact

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"action": data}
        if isinstance(data, dict) and isinstance(data.get("action"), str):
            action = data["action"].strip().lower()
            data = {**data, "action": _ACTION_ALIASES.get(action, action)}
        return data

    @model_validator(mode="after")
    def _options_fit_action(self) -> QuestionRule:
        a = self.action
        if a == "generalise":
            if (self.bands is None) == (self.to is None):
                raise ValueError(
                    "generalise needs either `to: month|year` (dates) or `bands: [...]` (numbers)"
                )
        elif self.bands is not None or self.to is not None or self.labels is not None:
            raise ValueError("`bands`, `labels` and `to` only apply to action generalise")
        if self.bands is not None:
            if not self.bands or any(b >= c for b, c in zip(self.bands, self.bands[1:], strict=False)):
                raise ValueError("`bands` must be a non-empty list of strictly increasing lower bounds")
            if self.labels is not None and len(self.labels) != len(self.bands):
                raise ValueError(f"`labels` needs one label per band ({len(self.bands)})")
        if a == "top_code" and self.max is None:
            raise ValueError("top_code needs `max`")
        if a == "bottom_code" and self.min is None:
            raise ValueError("bottom_code needs `min`")
        if self.max is not None and a != "top_code":
            raise ValueError("`max` only applies to action top_code")
        if self.min is not None and a != "bottom_code":
            raise ValueError("`min` only applies to action bottom_code")
        if self.decimals is not None and a != "round_gps":
            raise ValueError("`decimals` only applies to action round_gps")
        if self.normalise is not None and a != "pseudonymise":
            raise ValueError("`normalise` only applies to action pseudonymise")
        return self

    @property
    def gps_decimals(self) -> int:
        return 2 if self.decimals is None else self.decimals


class PrivacyPolicy(BaseModel):
    """A form's privacy policy: an action per question, metadata overrides and risk-report settings."""

    model_config = ConfigDict(extra="forbid")

    strict: bool = False  # true: any question without an entry stops the sync
    default_country_code: str | None = None  # e.g. "254"; used to normalise phone numbers before hashing
    questions: dict[str, QuestionRule] = Field(default_factory=dict)  # key: question name or xpath
    metadata: dict[str, QuestionRule] = Field(default_factory=dict)  # overrides for METADATA_DEFAULTS
    quasi_identifiers: list[str] = Field(default_factory=list)  # warehouse column names
    k_threshold: int = Field(default=5, ge=2)
    amber_k: int = Field(default=3, ge=1)
    global_risk_green: float = Field(default=0.03, gt=0, le=1)
    global_risk_amber: float = Field(default=0.05, gt=0, le=1)
    small_cell_threshold: int = Field(
        default=5, ge=1
    )  # indicator cells with n below this are published as NULL
    dpia_ref: str | None = None
    sensitivity: str | None = None  # ISP sensitivity class, e.g. "restricted"

    @field_validator("default_country_code", mode="before")
    @classmethod
    def _country_code(cls, v: Any) -> Any:
        if v is None:
            return None
        s = str(v).strip().lstrip("+")
        s = s[2:] if s.startswith("00") else s
        if not s.isdigit() or not 1 <= len(s) <= 3:
            raise ValueError("a country calling code is 1-3 digits, e.g. '254' (written without + or 00)")
        return s

    @field_validator("metadata")
    @classmethod
    def _known_metadata(cls, v: dict[str, QuestionRule]) -> dict[str, QuestionRule]:
        unknown = sorted(set(v) - set(METADATA_DEFAULTS))
        if unknown:
            raise ValueError(
                f"unknown metadata field(s) {unknown}; known: {sorted(METADATA_DEFAULTS)}"
                " (form questions go under `questions`)"
            )
        return v

    @model_validator(mode="after")
    def _thresholds(self) -> PrivacyPolicy:
        if self.amber_k > self.k_threshold:
            raise ValueError("amber_k must not be larger than k_threshold")
        if self.global_risk_green > self.global_risk_amber:
            raise ValueError("global_risk_green must not be larger than global_risk_amber")
        return self

    def metadata_rule(self, key: str) -> QuestionRule | None:
        """The effective rule for a KoBo metadata key (override, else default); None if not metadata."""
        if key in self.metadata:
            return self.metadata[key]
        default = METADATA_DEFAULTS.get(key)
        return QuestionRule.model_validate(default) if default is not None else None
