"""Settings: the one place environment variables are read (prefix ``RISKPIPE_``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_NATS_URL", "Settings"]

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class Settings(BaseSettings):
    """Process-wide settings; CLI flags override them."""

    model_config = SettingsConfigDict(env_prefix="RISKPIPE_", frozen=True, extra="ignore")

    nats_url: str = DEFAULT_NATS_URL
    data_dir: Path = Path(".riskpipe")
    subject_prefix: str = "rp"
    max_payload_bytes: int = Field(default=64 * 1024, gt=0, le=8 * 1024 * 1024)
    duplicate_window: timedelta = Field(default=timedelta(hours=2), ge=timedelta(minutes=1))
    replicas: int = Field(default=1, ge=1, le=5)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
