"""OpenAPI description of the device bearer token, so the schema documents sync auth."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class DeviceTokenScheme(OpenApiAuthenticationExtension):
    target_class = "fieldsync.sync.auth.DeviceTokenAuthentication"
    name = "deviceToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "Device token from POST /api/v1/devices/enrol"}
