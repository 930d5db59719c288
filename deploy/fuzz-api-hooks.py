"""schemathesis hooks of deploy/fuzz-api.sh: steer part of the generated requests at things that
exist, so that the fuzzing reaches past "No such container" into the handlers themselves, and
keep streams that last as long as a container runs finite.

Path parameters are bound to existing containers, images, volumes and networks by the config
file the script writes (dictionaries); here, `POST /containers/create` bodies get the fixture
image for most requests (the swagger makes `Image` optional, so few generated bodies name one)
and are sent as JSON (the swagger also lists application/octet-stream, which Wharf refuses, as
dockerd's CheckForJSON does).
"""

import os
import random

import schemathesis

IMAGE = os.environ.get("WHARF_FUZZ_IMAGE", "fuzz:latest")


# Streams that last as long as a container runs, made finite: a client-side timeout only
# bounds the wait for each read, and these send data every second.
FINITE = {
    ("GET", "/containers/{id}/stats"): ("stream", "false"),
    ("GET", "/containers/{id}/logs"): ("follow", "false"),
    ("POST", "/containers/{id}/attach"): ("stream", "false"),
}


@schemathesis.hook
def before_call(context, case, kwargs):
    operation = case.operation
    key = (operation.method.upper(), operation.path)
    if key in FINITE:
        name, value = FINITE[key]
        query = dict(case.query or {})
        query[name] = value
        case.query = query
        return
    if key == ("POST", "/exec/{id}/start"):
        # An attached exec of a shell waits for input that never comes.
        if isinstance(case.body, dict):
            case.body["Detach"] = True
        return
    if key != ("POST", "/containers/create"):
        return
    if isinstance(case.body, dict) and random.random() < 0.75:
        # The body is serialized after this hook, by the media type.
        case.body["Image"] = IMAGE
        case.media_type = "application/json"
