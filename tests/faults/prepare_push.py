"""Push through the push service and leave the transaction PREPARED (two-phase commit), as a
transaction manager coordinating the app's database with another resource would: run as a
child process against a private cluster with max_prepared_transactions > 0.

    python -m tests.faults.prepare_push <username> <device id> <gid> <mutations as JSON>

Prints the prepared transaction's id and the push's answers as JSON, then exits; the
transaction stays prepared (holding its locks and its xid) until a COMMIT PREPARED or
ROLLBACK PREPARED of the test.
"""
import json
import sys

import django


def main(username: str, device_id: str, gid: str, mutations: str) -> None:
    django.setup()
    from django.db import connection, transaction

    from fieldsync.sync.models import Device
    from fieldsync.sync.push import push_apply
    from warden_app.models import User

    user, device = User.objects.get(username=username), Device.objects.get(pk=device_id)
    with transaction.atomic():
        results = push_apply(user=user, device=device, mutations=json.loads(mutations))
        with connection.cursor() as c:
            c.execute("SELECT pg_current_xact_id()::text::bigint")
            xid = c.fetchone()[0]
            # Ends the session's transaction: the atomic block's COMMIT that follows finds none.
            c.execute("PREPARE TRANSACTION %s", [gid])
    print(json.dumps({"xid": xid, "results": results}))


if __name__ == "__main__":
    main(*sys.argv[1:5])
