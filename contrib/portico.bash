# bash completion for portico: installed as
# $(datadir)/bash-completion/completions/portico.
#
# The candidates come from the binary itself (`portico __complete WORD...`
# prints those for the word after WORDs), so they always match the commands,
# verbs and options of the portico that runs; when it has none (a file
# name, an id), bash completes file names.

_portico()
{
    local cur=${COMP_WORDS[COMP_CWORD]}
    local IFS=$'\n'
    local words
    words=$("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null) || return 0
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}

complete -o default -F _portico portico
