"""Exchange, IIS and TMG service state: read from exports (`exports`), the local service manager or
`sc \\\\HOST` (`probe`), and rated against the catalogue of what each service breaks (`catalogue`)."""
