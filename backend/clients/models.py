"""API clients and their keys. A key is stored only as a SHA-256 hash.

Keys look like ``ek_<prefix>_<secret>``: the 8-character prefix is public and
indexes the row, the 256-bit secret is never stored. Plain SHA-256 is enough
for a 256-bit random secret (nothing to brute-force), and keeps lookups fast.
A client may hold several keys, so a new one can be issued before the old one
is revoked.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from django.db import models
from django.utils import timezone


class Tier(models.TextChoices):
    FREE = "free", "Free"
    STANDARD = "standard", "Standard"
    UNLIMITED = "unlimited", "Unlimited"


class ApiClient(models.Model):
    name = models.CharField(max_length=100, unique=True)
    tier = models.CharField(max_length=20, choices=Tier.choices, default=Tier.FREE)
    is_active = models.BooleanField(default=True)
    #: Whether the client may run face_verify (a biometric comparison). Off
    #: unless the operator turns it on for a client that has a lawful basis.
    face_verify_enabled = models.BooleanField(
        default=False,
        help_text="May run face_verify (biometric); each job must also carry consent.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # DRF treats the authenticated principal as ``request.user``.
    @property
    def is_authenticated(self) -> bool:
        return True


KEY_PREFIX_LEN = 8


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKey(models.Model):
    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="keys")
    label = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=KEY_PREFIX_LEN, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"ek_{self.prefix}_… ({self.client.name})"

    def is_usable(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > now

    @classmethod
    def issue(
        cls, *, client: ApiClient, label: str = "", expires_at: datetime | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key and return it with its plaintext, which is never shown again."""
        while True:
            prefix = secrets.token_hex(KEY_PREFIX_LEN // 2)
            if not cls.objects.filter(prefix=prefix).exists():
                break
        secret = secrets.token_urlsafe(32)
        key = cls.objects.create(
            client=client,
            label=label,
            prefix=prefix,
            secret_hash=hash_secret(secret),
            expires_at=expires_at,
        )
        return key, f"ek_{prefix}_{secret}"

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class WebhookSecret(models.Model):
    """A client's webhook signing secret, sealed with the service's keyring.

    A signing secret must be usable, so unlike an API key it cannot be hashed:
    it is encrypted at rest (``backend.ephemeral.crypto``, bound to this client)
    and opened only to sign. A client holds at most two: during a rotation both
    sign every message (see ``backend.clients.webhook_secrets``).
    """

    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="webhook_secrets")
    #: base64 of the sealed ``whsec_...`` string.
    sealed = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"webhook secret of {self.client} from {self.created_at:%Y-%m-%d %H:%M}"
