# Wall time of CI stages, for .ci/run and scripts/test (source it; bash 5).
#   stage NAME COMMAND [ARGS…]   runs COMMAND, then prints and records how long it took
#   stage_summary                (an EXIT trap) prints every recorded stage and the total
# The first script that sources this owns the record ($METAMCP_STAGE_TIMES, a temporary
# file) and prints the summary; scripts it runs add their stages to the same record. A
# stage that fails is recorded as failed, with the time it ran, before the script exits.

_stage_now() { echo "${EPOCHREALTIME//[!0-9]/}"; } # microseconds, whatever the locale

_stage_record() { # NAME START
  local us=$(($(_stage_now) - $2))
  local line
  line=$(printf '%-24s %6d.%d s' "$1" $((us / 1000000)) $((us / 100000 % 10)))
  echo "stage: $line"
  echo "$line" >>"$METAMCP_STAGE_TIMES"
}

if [[ -z "${METAMCP_STAGE_TIMES:-}" ]]; then
  METAMCP_STAGE_TIMES="$(mktemp)"
  export METAMCP_STAGE_TIMES
  _stage_owner=1
  _stage_start=$(_stage_now)
fi

stage() {
  _stage_name=$1
  _stage_t0=$(_stage_now)
  shift
  "$@"
  _stage_record "$_stage_name" "$_stage_t0"
  _stage_name=
}

stage_summary() {
  local rc=$?
  if [[ -n "${_stage_name:-}" ]]; then
    _stage_record "$_stage_name (failed)" "$_stage_t0"
  fi
  if [[ -n "${_stage_owner:-}" ]]; then
    echo "wall time per stage:"
    sed 's/^/  /' "$METAMCP_STAGE_TIMES"
    local us=$(($(_stage_now) - _stage_start))
    printf '  %-24s %6d.%d s\n' total $((us / 1000000)) $((us / 100000 % 10))
    rm -f "$METAMCP_STAGE_TIMES"
  fi
  exit "$rc"
}
