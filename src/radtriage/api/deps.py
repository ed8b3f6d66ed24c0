"""The API's typed dependencies, in one place: what a route may ask for by declaring a parameter.

``db: Db`` gives the database, ``settings: AppSettings`` the settings, and a
role alias (``user: Radiologist``) the authenticated caller with that role
(401 without credentials, 403 for another role). Routes never reach into
``request.app.state`` themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Path, Request

from radtriage.api.auth import Role, User, require_roles
from radtriage.api.schemas import UidPattern
from radtriage.config import Settings
from radtriage.db import Database
from radtriage.sharing.model import SHARERS

if TYPE_CHECKING:
    from radtriage.service import Services


def services_of(request: Request) -> Services:
    """The running service's parts (`radtriage.service.Services`), set by `create_app`."""
    return request.app.state.services


def _db(request: Request) -> Database:
    return services_of(request).db


def _settings(request: Request) -> Settings:
    return services_of(request).settings


Db = Annotated[Database, Depends(_db)]
AppSettings = Annotated[Settings, Depends(_settings)]
StudyUid = Annotated[str, Path(pattern=UidPattern, max_length=64)]

# roles: who may call a route
Readers = Annotated[User, Depends(require_roles("radiologist", "stroke", "admin", "service"))]
People = Annotated[User, Depends(require_roles("radiologist", "stroke", "admin"))]
Radiologist = Annotated[User, Depends(require_roles("radiologist"))]
RadiologistOrAdmin = Annotated[User, Depends(require_roles("radiologist", "admin"))]
Admin = Annotated[User, Depends(require_roles("admin"))]
Staff = Annotated[User, Depends(require_roles("stroke", "admin"))]  # the stroke team acts on alerts
AlertReaders = Annotated[User, Depends(require_roles("stroke", "admin", "radiologist"))]
# shadow results (pipelines not yet live): admins and the silent trial's readers, nobody else
SHADOW_READERS: tuple[Role, ...] = ("admin", "commissioning")
ShadowReaders = Annotated[User, Depends(require_roles(*SHADOW_READERS))]
# the dose registry: the site's medical physicists and the admins
Physicists = Annotated[User, Depends(require_roles("physicist", "admin"))]
# authorised shares of a study (QR links a patient carries): the clinicians, radiologists and admins
Sharers = Annotated[User, Depends(require_roles(*SHARERS))]
