#!/bin/sh
# The example's mail "service": appends one line per mail to .evflow/mail.log.
# evflow passes event data only as argv (never through a shell), the event JSON on stdin,
# and EVFLOW_DELIVERY_ID so a mail is not sent twice for one delivery.
set -eu
mkdir -p .evflow
to="$1"; shift
printf '%s\tto=%s\tdelivery=%s\t%s\n' "$(date -u +%FT%TZ)" "$to" "${EVFLOW_DELIVERY_ID:-none}" "$*" >> .evflow/mail.log
echo "mail to $to: $*"
