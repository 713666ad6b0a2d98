"""Pure converters between the node's own shapes and the formats people already use.

DHIS2 data value sets become a report's rows; a release becomes FHIR R4 MeasureReports or
HXL-tagged CSV; an HXL-tagged spreadsheet becomes a report's header. No I/O here: routes,
commands and pages read and write, these modules only translate.
"""
