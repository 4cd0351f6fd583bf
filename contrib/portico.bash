# bash completion for portico: installed as
# $(datadir)/bash-completion/completions/portico.
#
# The candidates come from the binary itself (`portico __complete WORD...`
# prints those for the word after WORDs), so they always match the commands,
# verbs and options of the portico that runs; when it has none (a file
# name, an id), bash completes file names.  Words are split at blanks only:
# a URL's ':' or an option's '=' do not cut a word in two.

_portico()
{
    local cur words cword
    if declare -F _get_comp_words_by_ref >/dev/null; then
        _get_comp_words_by_ref -n =: cur words cword
    elif [[ -n ${COMP_LINE-} ]]; then
        # without bash-completion: the line up to the cursor, split at blanks
        local line=${COMP_LINE:0:COMP_POINT}
        read -r -a words <<<"$line"
        [[ $line == *[[:space:]] ]] && words+=("")
        cword=$((${#words[@]} - 1))
        cur=${words[cword]}
    else
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
        cur=${words[cword]}
    fi
    local IFS=$'\n'
    local cands
    cands=$("${words[0]}" __complete "${words[@]:1:cword-1}" 2>/dev/null) || return 0
    COMPREPLY=($(compgen -W "$cands" -- "$cur"))
    # bash-completion trims what it treats as a break (the URL's "http:")
    declare -F __ltrim_colon_completions >/dev/null && __ltrim_colon_completions "$cur"
}

complete -o default -F _portico portico
