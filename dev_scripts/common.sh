# Functions the dev scripts share (POSIX sh; sourced, not run).

# Read a .env file, then restore what the caller exported (the environment wins, as in
# recsys.config). A missing file is no error.
load_env_file() {
    [ -f "$1" ] || return 0
    _env_file="$1"
    # "." looks a name without a slash up in PATH: make it a path.
    case "$_env_file" in
        */*) ;;
        *) _env_file="./$_env_file" ;;
    esac
    _caller_env="$(export -p)"
    set -a
    # shellcheck disable=SC1090
    . "$_env_file"
    set +a
    eval "$_caller_env" || true
    unset _env_file _caller_env
}

# Print the arguments on one line, quoted so that a shell reads them back the same.
shell_quote() {
    for _word do
        case "$_word" in
            "" | *[!A-Za-z0-9_./:=@%+,-]*)
                printf "'%s' " "$(printf '%s' "$_word" | sed "s/'/'\\\\''/g")"
                ;;
            *) printf '%s ' "$_word" ;;
        esac
    done
    echo
    unset _word
}
