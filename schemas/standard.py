"""The standard schemas every node offers. Published versions never change: add a new one.

Each measure's ``maximum`` is the most one cell may state: far above anything real (so no
true report is refused) and low enough that no sum of stored cells can overflow (each schema
checks ``largest_sum`` on construction). A limit change is a new version of the schema.
"""

from __future__ import annotations

from schemas.labels import Label
from schemas.model import FieldType, Measure, MeasureKind, ReportField, ReportSchema, SchemaKind


def _l(en: str, fr: str, es: str, ar: str) -> Label:
    return Label(en=en, fr=fr, es=es, ar=ar)


AREA = ReportField(
    name="area",
    type=FieldType.AREA,
    label=_l("Area", "Zone", "Área", "المنطقة"),
    description=_l(
        "Admin area code from the node's gazetteer (ISO 3166-2 or OCHA P-code)",
        "Code de zone administrative du répertoire du nœud (ISO 3166-2 ou P-code OCHA)",
        "Código de área administrativa del nomenclátor del nodo (ISO 3166-2 o P-code de OCHA)",
        "رمز المنطقة الإدارية من معجم العقدة (ISO 3166-2 أو رمز OCHA)",
    ),
    hxl="#adm1+code",
)
WEEK = ReportField(
    name="week",
    type=FieldType.WEEK,
    label=_l("Epi week", "Semaine épidémiologique", "Semana epidemiológica", "الأسبوع الوبائي"),
    description=_l(
        "Epidemiological week, YYYY-Www, in the node's numbering (ISO or MMWR)",
        "Semaine épidémiologique, AAAA-Sss, selon la numérotation du nœud (ISO ou MMWR)",
        "Semana epidemiológica, AAAA-Sss, según la numeración del nodo (ISO o MMWR)",
        "الأسبوع الوبائي بصيغة YYYY-Www حسب ترقيم العقدة (ISO أو MMWR)",
    ),
    hxl="#date+week",
)
AGE_BAND = ReportField(
    name="age_band",
    type=FieldType.CODE,
    codelist="age_band",
    label=_l("Age band", "Tranche d'âge", "Grupo de edad", "الفئة العمرية"),
    description=_l(
        "Age band in completed years, bounds inclusive",
        "Tranche d'âge en années révolues, bornes incluses",
        "Grupo de edad en años cumplidos, límites incluidos",
        "الفئة العمرية بالسنوات المكتملة، الحدود مشمولة",
    ),
    hxl="#group+age",
)
SEX = ReportField(
    name="sex",
    type=FieldType.CODE,
    codelist="sex",
    label=_l("Sex", "Sexe", "Sexo", "الجنس"),
    description=_l(
        "Sex as recorded (FHIR administrative gender)",
        "Sexe tel qu'enregistré (genre administratif FHIR)",
        "Sexo tal como se registró (género administrativo FHIR)",
        "الجنس كما هو مسجل (الجنس الإداري وفق FHIR)",
    ),
    hxl="#group+sex",
)


def _count_field(name: str, label: Label, description: Label, hxl: str) -> ReportField:
    return ReportField(
        name=name, type=FieldType.COUNT, label=label, description=description, hxl=hxl
    )


WEEKLY_MAXIMUM = 100_000_000  # per area, week, age band and sex: more than any epidemic's week
BEDS_MAXIMUM = 100_000_000  # per area and week: ten times the beds of the largest country
PEOPLE_MAXIMUM = 500_000_000  # per area, week and group: more people than any country but two


def _measure(
    name: str,
    label: Label,
    description: Label,
    unit: str,
    kind: MeasureKind,
    bound: int,
    hxl: str,
    maximum: int,
) -> tuple[ReportField, Measure]:
    field = _count_field(name, label, description, hxl)
    measure = Measure(
        name=name,
        label=label,
        description=description,
        unit=unit,
        kind=kind,
        contribution_bound=bound,
        maximum=maximum,
        hxl=hxl,
    )
    return field, measure


_EPI = [
    _measure(
        "cases",
        _l("Cases", "Cas", "Casos", "الحالات"),
        _l(
            "New cases reported in the week",
            "Nouveaux cas notifiés dans la semaine",
            "Casos nuevos notificados en la semana",
            "الحالات الجديدة المبلغ عنها خلال الأسبوع",
        ),
        "persons",
        MeasureKind.FLOW,
        1,
        "#affected+cases",
        WEEKLY_MAXIMUM,
    ),
    _measure(
        "deaths",
        _l("Deaths", "Décès", "Defunciones", "الوفيات"),
        _l(
            "Deaths reported in the week",
            "Décès notifiés dans la semaine",
            "Defunciones notificadas en la semana",
            "الوفيات المبلغ عنها خلال الأسبوع",
        ),
        "persons",
        MeasureKind.FLOW,
        1,
        "#affected+killed",
        WEEKLY_MAXIMUM,
    ),
    _measure(
        "admissions",
        _l("Hospital admissions", "Hospitalisations", "Hospitalizaciones", "حالات دخول المستشفى"),
        _l(
            "Hospital admissions in the week",
            "Admissions à l'hôpital dans la semaine",
            "Ingresos hospitalarios en la semana",
            "حالات الدخول إلى المستشفى خلال الأسبوع",
        ),
        "admissions",
        MeasureKind.FLOW,
        2,
        "#affected+hospitalised",
        WEEKLY_MAXIMUM,
    ),
    _measure(
        "tests",
        _l("Tests", "Tests", "Pruebas", "الفحوصات"),
        _l(
            "Diagnostic tests performed in the week",
            "Tests diagnostiques réalisés dans la semaine",
            "Pruebas diagnósticas realizadas en la semana",
            "الفحوصات التشخيصية المنجزة خلال الأسبوع",
        ),
        "tests",
        MeasureKind.FLOW,
        3,
        "#indicator+tests",
        WEEKLY_MAXIMUM,
    ),
]

WEEKLY_EPI = ReportSchema(
    name="weekly_epi",
    version=1,
    kind=SchemaKind.AGGREGATE,
    label=_l(
        "Weekly epidemiological counts",
        "Décomptes épidémiologiques hebdomadaires",
        "Recuentos epidemiológicos semanales",
        "الأعداد الوبائية الأسبوعية",
    ),
    description=_l(
        "Cases, deaths, hospital admissions and tests by area, epi week, age band and sex",
        "Cas, décès, hospitalisations et tests par zone, semaine épidémiologique, tranche d'âge et sexe",
        "Casos, defunciones, hospitalizaciones y pruebas por área, semana epidemiológica, grupo de edad y sexo",
        "الحالات والوفيات وحالات الدخول إلى المستشفى والفحوصات حسب المنطقة والأسبوع الوبائي والفئة العمرية والجنس",
    ),
    fields=(AREA, WEEK, AGE_BAND, SEX, *(f for f, _ in _EPI)),
    dimensions=("area", "week", "age_band", "sex"),
    measures=tuple(m for _, m in _EPI),
    cell_key=("area", "week", "age_band", "sex"),
)

_CASE_ID = ReportField(
    name="case_id",
    type=FieldType.TEXT,
    label=_l("Case identifier", "Identifiant du cas", "Identificador del caso", "معرّف الحالة"),
    description=_l(
        "The agency's pseudonymous case number; a later row with the same number corrects it",
        "Numéro de cas pseudonyme de l'agence ; une ligne ultérieure avec le même numéro le corrige",
        "Número de caso seudónimo de la agencia; una fila posterior con el mismo número lo corrige",
        "رقم الحالة المستعار لدى الجهة؛ يصحح الصف اللاحق بنفس الرقم الصف السابق",
    ),
)


def _date(name: str, label: Label, description: Label, *, required: bool) -> ReportField:
    return ReportField(
        name=name, type=FieldType.DATE, label=label, description=description, required=required
    )


LINE_LIST = ReportSchema(
    name="line_list",
    version=1,
    kind=SchemaKind.CASE_BASED,
    label=_l(
        "Case-based line list",
        "Liste linéaire de cas",
        "Listado nominal de casos",
        "قائمة الحالات الفردية",
    ),
    description=_l(
        "One row per case; the node aggregates it and the rows never leave the node",
        "Une ligne par cas ; le nœud l'agrège et les lignes ne quittent jamais le nœud",
        "Una fila por caso; el nodo la agrega y las filas nunca salen del nodo",
        "صف واحد لكل حالة؛ تجمعها العقدة ولا تغادر الصفوف العقدة أبدا",
    ),
    fields=(
        _CASE_ID,
        AREA,
        _date(
            "onset_date",
            _l("Onset date", "Date de début", "Fecha de inicio", "تاريخ ظهور الأعراض"),
            _l(
                "Date symptoms began, if known",
                "Date du début des symptômes, si connue",
                "Fecha de inicio de síntomas, si se conoce",
                "تاريخ بدء الأعراض إن كان معروفا",
            ),
            required=False,
        ),
        _date(
            "report_date",
            _l("Report date", "Date de notification", "Fecha de notificación", "تاريخ الإبلاغ"),
            _l(
                "Date the case was reported; its epi week is the case's week",
                "Date de notification du cas ; sa semaine épidémiologique est celle du cas",
                "Fecha de notificación; su semana epidemiológica es la del caso",
                "تاريخ الإبلاغ عن الحالة؛ أسبوعه الوبائي هو أسبوع الحالة",
            ),
            required=True,
        ),
        AGE_BAND,
        SEX,
        ReportField(
            name="outcome",
            type=FieldType.CODE,
            codelist="outcome",
            label=_l("Outcome", "Issue", "Desenlace", "المآل"),
            description=_l(
                "Latest known outcome",
                "Dernière issue connue",
                "Último desenlace conocido",
                "آخر مآل معروف",
            ),
        ),
    ),
    dimensions=("area", "week", "age_band", "sex", "outcome"),
    measures=(
        Measure(
            name="cases",
            label=_l("Cases", "Cas", "Casos", "الحالات"),
            description=_l(
                "Number of case rows",
                "Nombre de lignes de cas",
                "Número de filas de casos",
                "عدد صفوف الحالات",
            ),
            unit="persons",
            kind=MeasureKind.FLOW,
            contribution_bound=1,
            hxl="#affected+cases",
        ),
    ),
    cell_key=("case_id",),
    week_from="report_date",
)

_CAPACITY = [
    _measure(
        name,
        label,
        description,
        "beds",
        MeasureKind.STOCK,
        1,
        hxl,
        BEDS_MAXIMUM,
    )
    for name, label, description, hxl in (
        (
            "beds_available",
            _l("Beds available", "Lits disponibles", "Camas disponibles", "الأسرة المتاحة"),
            _l(
                "Staffed beds free at the end of the week",
                "Lits dotés libres en fin de semaine",
                "Camas dotadas libres al final de la semana",
                "الأسرة المجهزة الشاغرة في نهاية الأسبوع",
            ),
            "#capacity+beds+available",
        ),
        (
            "beds_occupied",
            _l("Beds occupied", "Lits occupés", "Camas ocupadas", "الأسرة المشغولة"),
            _l(
                "Beds occupied at the end of the week",
                "Lits occupés en fin de semaine",
                "Camas ocupadas al final de la semana",
                "الأسرة المشغولة في نهاية الأسبوع",
            ),
            "#capacity+beds+occupied",
        ),
        (
            "icu_beds_available",
            _l(
                "ICU beds available",
                "Lits de réanimation disponibles",
                "Camas de UCI disponibles",
                "أسرة العناية المركزة المتاحة",
            ),
            _l(
                "Intensive care beds free at the end of the week",
                "Lits de soins intensifs libres en fin de semaine",
                "Camas de cuidados intensivos libres al final de la semana",
                "أسرة العناية المركزة الشاغرة في نهاية الأسبوع",
            ),
            "#capacity+icu+available",
        ),
        (
            "icu_beds_occupied",
            _l(
                "ICU beds occupied",
                "Lits de réanimation occupés",
                "Camas de UCI ocupadas",
                "أسرة العناية المركزة المشغولة",
            ),
            _l(
                "Intensive care beds occupied at the end of the week",
                "Lits de soins intensifs occupés en fin de semaine",
                "Camas de cuidados intensivos ocupadas al final de la semana",
                "أسرة العناية المركزة المشغولة في نهاية الأسبوع",
            ),
            "#capacity+icu+occupied",
        ),
    )
]

HOSPITAL_CAPACITY = ReportSchema(
    name="hospital_capacity",
    version=1,
    kind=SchemaKind.AGGREGATE,
    label=_l(
        "Hospital capacity",
        "Capacité hospitalière",
        "Capacidad hospitalaria",
        "القدرة الاستيعابية للمستشفيات",
    ),
    description=_l(
        "Beds and intensive care beds available and occupied, by area and week (stocks)",
        "Lits et lits de soins intensifs disponibles et occupés, par zone et semaine (stocks)",
        "Camas y camas de cuidados intensivos disponibles y ocupadas, por área y semana (existencias)",
        "الأسرة وأسرة العناية المركزة المتاحة والمشغولة حسب المنطقة والأسبوع (أرصدة)",
    ),
    fields=(AREA, WEEK, *(f for f, _ in _CAPACITY)),
    dimensions=("area", "week"),
    measures=tuple(m for _, m in _CAPACITY),
    cell_key=("area", "week"),
)

POPULATION_GROUP = ReportField(
    name="population_group",
    type=FieldType.CODE,
    codelist="population_group",
    label=_l("Population group", "Groupe de population", "Grupo de población", "الفئة السكانية"),
    description=_l(
        "Displacement status of the people counted",
        "Statut de déplacement des personnes comptées",
        "Situación de desplazamiento de las personas contadas",
        "وضع النزوح للأشخاص المحسوبين",
    ),
    hxl="#group+population",
)

_SITREP = [
    _measure(name, label, description, "persons", MeasureKind.STOCK, 1, hxl, PEOPLE_MAXIMUM)
    for name, label, description, hxl in (
        (
            "people_affected",
            _l("People affected", "Personnes touchées", "Personas afectadas", "الأشخاص المتضررون"),
            _l(
                "People affected by the crisis",
                "Personnes touchées par la crise",
                "Personas afectadas por la crisis",
                "الأشخاص المتضررون من الأزمة",
            ),
            "#affected",
        ),
        (
            "people_in_need",
            _l(
                "People in need",
                "Personnes dans le besoin",
                "Personas con necesidades",
                "الأشخاص المحتاجون",
            ),
            _l(
                "People in need of humanitarian assistance",
                "Personnes ayant besoin d'une aide humanitaire",
                "Personas que necesitan asistencia humanitaria",
                "الأشخاص المحتاجون إلى مساعدة إنسانية",
            ),
            "#inneed",
        ),
        (
            "people_displaced",
            _l(
                "People displaced",
                "Personnes déplacées",
                "Personas desplazadas",
                "الأشخاص النازحون",
            ),
            _l(
                "People displaced from their homes",
                "Personnes déplacées de leur foyer",
                "Personas desplazadas de sus hogares",
                "الأشخاص المهجرون من منازلهم",
            ),
            "#affected+displaced",
        ),
        (
            "people_reached",
            _l(
                "People reached",
                "Personnes atteintes",
                "Personas alcanzadas",
                "الأشخاص الذين تم الوصول إليهم",
            ),
            _l(
                "People reached with assistance",
                "Personnes ayant reçu une aide",
                "Personas que recibieron asistencia",
                "الأشخاص الذين وصلتهم المساعدة",
            ),
            "#reached",
        ),
    )
]

HUMANITARIAN_SITREP = ReportSchema(
    name="humanitarian_sitrep",
    version=1,
    kind=SchemaKind.AGGREGATE,
    label=_l(
        "Humanitarian situation report",
        "Rapport de situation humanitaire",
        "Informe de situación humanitaria",
        "تقرير الوضع الإنساني",
    ),
    description=_l(
        "People affected, in need, displaced and reached, by area, week and population group",
        "Personnes touchées, dans le besoin, déplacées et atteintes, par zone, semaine et groupe de population",
        "Personas afectadas, con necesidades, desplazadas y alcanzadas, por área, semana y grupo de población",
        "الأشخاص المتضررون والمحتاجون والنازحون والذين تم الوصول إليهم حسب المنطقة والأسبوع والفئة السكانية",
    ),
    fields=(AREA, WEEK, POPULATION_GROUP, *(f for f, _ in _SITREP)),
    dimensions=("area", "week", "population_group"),
    measures=tuple(m for _, m in _SITREP),
    cell_key=("area", "week", "population_group"),
)

STANDARD_SCHEMAS: tuple[ReportSchema, ...] = (
    WEEKLY_EPI,
    LINE_LIST,
    HOSPITAL_CAPACITY,
    HUMANITARIAN_SITREP,
)
