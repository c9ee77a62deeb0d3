"""One settings object for every process, read from ``JUDGESERVE_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .schema import RubricName

__all__ = ["Settings", "RayActorOptions", "get_settings"]


class RayActorOptions(BaseModel):
    """Where Ray places each worker actor of ``judgeserve worker --ray N`` and
    ``judgeserve generate-worker --ray N`` (Ray's own actor options, by the same names)."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float = Field(
        0.5, ge=0, description="CPUs each actor reserves (fractions share a core)."
    )
    num_gpus: float = Field(0, ge=0, description="GPUs each actor reserves (workers need none).")
    resources: dict[str, float] = Field(
        default_factory=dict,
        description="Custom resources each actor needs, e.g. {\"judgeserve\": 1} to keep the "
        "actors on the nodes started with `ray start --resources '{\"judgeserve\": 8}'`.",
    )
    scheduling_strategy: Literal["SPREAD", "DEFAULT"] = Field(
        "SPREAD",
        description="SPREAD: the actors go to as many nodes as fit them, so losing one node "
        "loses few of them; DEFAULT: Ray packs them where it prefers.",
    )


class Settings(BaseSettings):
    """Every knob judgeserve reads; each maps to ``JUDGESERVE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="JUDGESERVE_", extra="forbid", env_file=None)

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis holding the sample stream.")
    database_url: str = Field(
        "sqlite:///judgeserve.db",
        description="SQLAlchemy URL of the store; SQLite file by default, PostgreSQL for many workers.",
    )
    api_url: str = Field("http://127.0.0.1:8000", description="Where the SDK sends samples.")
    host: str = Field("127.0.0.1", description="Address `judgeserve up/api` bind to.")
    port: int = Field(8000, description="Port `judgeserve up/api` listen on.")
    redis_socket_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Seconds a Redis command may wait for an answer before it fails (and is "
        "retried): a silent network partition must not hang the API or a worker. Keep it "
        "above the workers' 0.5 s blocking read.",
    )
    redis_connect_timeout_s: float = Field(
        5.0, gt=0, description="Seconds to wait for a connection to Redis before retrying."
    )
    worker_heartbeat_s: float = Field(
        5.0,
        gt=0,
        description="How often each worker reports to Redis that it is alive and what it is "
        "doing; /healthz counts a worker silent for 3 times this as gone.",
    )
    stream_prefix: str = Field("js", description="Prefix of every Redis key judgeserve writes.")
    consumer_group: str = Field("workers", description="Redis consumer group the workers share.")
    worker_batch: int = Field(64, ge=1, le=10_000, description="Entries a worker reads per batch.")
    claim_idle_ms: int = Field(
        60_000, ge=1, description="Entries pending longer than this on a consumer are reclaimed."
    )
    max_deliveries: int = Field(
        5, ge=1, description="Deliveries after which a failing entry moves to the dead-letter stream."
    )
    retry_delay_s: float = Field(
        5.0,
        ge=0,
        description="First wait before a failed scorer is retried on a sample; doubles per "
        "attempt until max_deliveries, then the sample is dead-lettered.",
    )
    checkpoint_delay_s: float = Field(
        2.0,
        ge=0,
        description="While a checkpoint's samples keep arriving, its aggregates and set-level "
        "metrics are recomputed at most this often (at once when the stream is idle).",
    )
    checkpoint_idle_s: float = Field(
        30.0,
        ge=0,
        description="A checkpoint whose sender did not say how many samples it will have is "
        "complete once none arrived for this long; its alert rules then run, once.",
    )
    max_backlog: int = Field(
        1_000_000, ge=1, description="Unprocessed entries above which the API answers 429."
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Request bodies over this are refused (413) unread."
    )
    scorers: list[str] = Field(
        default_factory=list,
        description="Extra scorers as 'module:attr' (built-ins and entry points load anyway).",
    )
    disabled_scorers: list[str] = Field(
        default_factory=list, description="Scorer names not to run, e.g. ['reference']."
    )
    spool_dir: Path = Field(
        Path.home() / ".cache" / "judgeserve" / "spool",
        description="Where the SDK keeps its journals (what it has not delivered yet); must be "
        "a local disk: its locks do not hold across the hosts of a network filesystem.",
    )
    ray_actor_options: RayActorOptions = Field(
        default_factory=RayActorOptions,
        description="Placement of the worker actors `--ray N` starts (JSON), e.g. "
        '{"num_cpus": 0.25, "resources": {"judgeserve": 1}, "scheduling_strategy": "SPREAD"}.',
    )
    judge_url: str | None = Field(
        None, description="The Ray Serve judge endpoint (e.g. http://host:8001/judge)."
    )
    generator: str | None = Field(
        None,
        description="Checkpoint mode: the generator the generation workers use: 'serve' (the "
        "generator application on Ray Serve, at generator_url), or one in-process: 'vllm', "
        "'transformers', any registered name. Unset: `judgeserve up` runs no generation "
        "worker.",
    )
    generator_url: str | None = Field(
        None, description="The Ray Serve generator endpoint (e.g. http://host:8001/generator)."
    )
    generator_base_model: str | None = Field(
        None,
        description="The policy's base model an in-process generator hosts (a local folder "
        "or model name); for 'serve', the base the deployment must host (checked).",
    )
    generator_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword options of the in-process generator (JSON), e.g. "
        '{"max_adapters": 4, "threads": 2}.',
    )
    judge_api_key: SecretStr | None = Field(
        None,
        description="API key of an OpenAI-compatible judge server (the 'openai' backend), read "
        "here rather than written into rubric files.",
    )
    verdict_cache_size: int = Field(
        100_000,
        ge=0,
        description="Most judge verdicts kept in Redis, shared by the workers: an identical "
        "(judge version, prompt) is judged once, the least recently used are dropped beyond "
        "this (~0.5 KB each); 0 turns the shared cache off (duplicates within one batch are "
        "still judged once).",
    )
    judge_rubrics: list[RubricName] = Field(
        default_factory=list,
        description="Rubrics for runs that name none (JSON list of rubric names).",
    )
    rubric_dir: Path = Field(
        Path("rubrics"), description="Where rubric YAML files are looked up (then built-ins)."
    )
    drift_rescore_max: int = Field(
        500,
        ge=0,
        le=100_000,
        description="When a judge version first appears for a rubric, re-score at most this "
        "many of the rubric's labelled items with it, so its agreement with people is known "
        "(0: never).",
    )
    drift_rescore_batch: int = Field(
        16,
        ge=1,
        le=1_000,
        description="Labelled items a worker re-scores at a time, between batches of samples.",
    )
    drift_stale_s: float = Field(
        600.0,
        gt=0,
        description="A re-scoring whose worker said nothing for this long (it died), or that "
        "failed this long ago, is taken on by another worker with the same judge.",
    )
    api_token: str | None = Field(
        None,
        description="Token the SDK sends (Authorization: Bearer); unset, an SDK talking to a "
        "loopback URL uses the local token in data_dir.",
    )
    auth: Literal["on", "off"] = Field(
        "on",
        description="API tokens required on every route but /healthz. 'off' lets anyone who can "
        "reach the port read every prompt: only for a trusted network.",
    )
    data_dir: Path = Field(
        Path.home() / ".local" / "share" / "judgeserve",
        description="Where the API keeps the local token (file 'token', mode 0600) that the "
        "SDK and CLI on this machine read instead of being given one; the memorization "
        "indexes too, unless index_dir says otherwise.",
    )
    # After data_dir: its default is made from data_dir's value.
    index_dir: Path = Field(
        default_factory=lambda data: data["data_dir"] / "indexes",
        description="Where memorization indexes are stored, one folder per run; default "
        "<data_dir>/indexes. Made absolute, so that `judgeserve index build` and the workers "
        "agree wherever they are started.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values the API answers (against DNS rebinding), e.g. "
        "['judge.example.com', '*.internal']; empty: the loopback names and the bind address, "
        "or any host when binding all interfaces (0.0.0.0). '*' allows any.",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host:port) besides the API's own that may send "
        "state-changing requests (POST), e.g. a reverse proxy's public URL when it rewrites Host.",
    )
    alerts: bool = Field(True, description="Evaluate alert rules after every checkpoint.")
    alert_rules: Path | None = Field(
        None, description="Alert rules YAML file; unset: the default rules shipped in the package."
    )
    quality: Path | None = Field(
        None,
        description="Quality YAML: which metrics make a checkpoint best, and the gates that "
        "disqualify one (`judgeserve best`, GET /v1/runs/{run}/best); unset: the default "
        "shipped in the package.",
    )
    alert_webhook_url: str | None = Field(None, description="POST every new alert to this URL.")
    alert_webhook_format: Literal["json", "slack"] = Field(
        "json", description="Webhook body: the alert as JSON, or a Slack-compatible message."
    )

    @field_validator("index_dir", "data_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        # A relative path would name another folder for each working directory.
        return path.expanduser().absolute()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
