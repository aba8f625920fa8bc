"""Personal names by ethnic group, in Cyrillic as the civil registry writes them.

Shares follow the 2021 census (Bureau of National Statistics): Kazakhs 70.4 %, Russians 15.5 %,
then Uzbeks 3.2 %, Ukrainians 1.9 %, Uyghurs 1.5 %, Germans 1.2 %, Tatars 1.1 %, Koreans 0.6 %
and others; the small groups are folded into four name pools. Kazakh names keep the Kazakh
letters (ә ғ қ ң ө ұ ү һ і) as they appear on IDs issued since the 2000s; most surnames are
gendered (Ахметов/Ахметова), Korean ones are not (Ким, Пак, Цой).

Patronymics: Kazakhs write either the Kazakh form (Серікұлы, Серікқызы, since the 1990s) or the
Russian form (Серикович, Сериковна); some people have none. Every male first name therefore
carries its own two Russian-style patronymic forms, since the rules (Алексей -> Алексеевич,
Ильич, Кузьмич) are not worth encoding for a generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa

# (label, share of households); the head's group gives the household's names.
ETHNIC_GROUPS = (
    ("kazakh", 0.704),
    ("russian", 0.155),
    ("turkic", 0.070),  # Uzbek, Uyghur, Tatar, Azerbaijani, Turkish: -ов/-ова surnames
    ("slavic_german", 0.050),  # Ukrainian, German, Belarusian, Polish
    ("korean", 0.021),
)

# male first name, Russian-style patronymic (m), (f)
_KAZAKH_MALE = [
    ("Нұрлан", "Нурланович", "Нурлановна"), ("Серік", "Серикович", "Сериковна"),
    ("Ерлан", "Ерланович", "Ерлановна"), ("Бауыржан", "Бауржанович", "Бауржановна"),
    ("Қайрат", "Кайратович", "Кайратовна"), ("Асқар", "Аскарович", "Аскаровна"),
    ("Ержан", "Ержанович", "Ержановна"), ("Дәурен", "Дауренович", "Дауреновна"),
    ("Мұрат", "Муратович", "Муратовна"), ("Ғалым", "Галымович", "Галымовна"),
    ("Әлібек", "Алибекович", "Алибековна"), ("Талғат", "Талгатович", "Талгатовна"),
    ("Болат", "Болатович", "Болатовна"), ("Арман", "Арманович", "Армановна"),
    ("Данияр", "Даниярович", "Данияровна"), ("Нұржан", "Нуржанович", "Нуржановна"),
    ("Ермек", "Ермекович", "Ермековна"), ("Жандос", "Жандосович", "Жандосовна"),
    ("Санжар", "Санжарович", "Санжаровна"), ("Айбек", "Айбекович", "Айбековна"),
    ("Нұрсұлтан", "Нурсултанович", "Нурсултановна"), ("Дархан", "Дарханович", "Дархановна"),
    ("Ахмет", "Ахметович", "Ахметовна"), ("Темірлан", "Темирланович", "Темирлановна"),
    ("Әділет", "Адилетович", "Адилетовна"), ("Мағжан", "Магжанович", "Магжановна"),
    ("Ілияс", "Ильясович", "Ильясовна"), ("Төлеген", "Тулегенович", "Тулегеновна"),
    ("Үсен", "Усенович", "Усеновна"), ("Шыңғыс", "Чингисович", "Чингисовна"),
    ("Ерболат", "Ерболатович", "Ерболатовна"), ("Рустем", "Рустемович", "Рустемовна"),
]  # fmt: skip
_KAZAKH_FEMALE = [
    "Айгүл", "Гүлнар", "Әсел", "Дана", "Жанар", "Айжан", "Сәуле", "Мәдина", "Ақбота",
    "Динара", "Гүлмира", "Назерке", "Аружан", "Жұлдыз", "Айгерім", "Ботагөз", "Салтанат",
    "Меруерт", "Қарлығаш", "Ләззат", "Шынар", "Индира", "Әйгерім", "Нұргүл", "Толғанай",
    "Балжан", "Райхан", "Үміт", "Іңкәр", "Аяулым",
]  # fmt: skip
_KAZAKH_SURNAMES = [
    "Ахметов", "Сейітов", "Омаров", "Әбенов", "Жақсыбеков", "Нұрланов", "Серікбаев",
    "Қасымов", "Тоқтаров", "Бекболатов", "Жұмабаев", "Сәрсенбаев", "Ермеков", "Исаев",
    "Мұхамеджанов", "Қожахметов", "Тұрсынов", "Әлиев", "Байжанов", "Есенов", "Оспанов",
    "Смағұлов", "Кенжебеков", "Мұсабеков", "Ибраев", "Төлеуов", "Рахимов", "Досмағанбетов",
    "Шәріпов", "Ғабдуллин", "Құрманов", "Әубәкіров", "Нығметов", "Бейсенов", "Жанұзақов",
    "Қалиев", "Ысқақов", "Мырзахметов", "Үсенов", "Дүйсенбаев",
]  # fmt: skip
_RUSSIAN_MALE = [
    ("Александр", "Александрович", "Александровна"), ("Сергей", "Сергеевич", "Сергеевна"),
    ("Андрей", "Андреевич", "Андреевна"), ("Дмитрий", "Дмитриевич", "Дмитриевна"),
    ("Алексей", "Алексеевич", "Алексеевна"), ("Владимир", "Владимирович", "Владимировна"),
    ("Иван", "Иванович", "Ивановна"), ("Николай", "Николаевич", "Николаевна"),
    ("Евгений", "Евгеньевич", "Евгеньевна"), ("Михаил", "Михайлович", "Михайловна"),
    ("Виктор", "Викторович", "Викторовна"), ("Олег", "Олегович", "Олеговна"),
    ("Юрий", "Юрьевич", "Юрьевна"), ("Павел", "Павлович", "Павловна"),
    ("Игорь", "Игоревич", "Игоревна"), ("Максим", "Максимович", "Максимовна"),
    ("Артём", "Артёмович", "Артёмовна"), ("Илья", "Ильич", "Ильинична"),
]  # fmt: skip
_RUSSIAN_FEMALE = [
    "Елена", "Ольга", "Татьяна", "Наталья", "Ирина", "Светлана", "Анна", "Мария", "Юлия",
    "Екатерина", "Людмила", "Галина", "Анастасия", "Валентина", "Дарья", "Софья", "Оксана",
]  # fmt: skip
_RUSSIAN_SURNAMES = [
    "Иванов", "Петров", "Смирнов", "Кузнецов", "Попов", "Васильев", "Соколов", "Михайлов",
    "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров",
    "Павлов", "Козлов", "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Никитин",
]  # fmt: skip
_TURKIC_MALE = [
    ("Рустам", "Рустамович", "Рустамовна"), ("Бахтияр", "Бахтиярович", "Бахтияровна"),
    ("Шерзод", "Шерзодович", "Шерзодовна"), ("Дильшат", "Дильшатович", "Дильшатовна"),
    ("Ринат", "Ринатович", "Ринатовна"), ("Азат", "Азатович", "Азатовна"),
    ("Ильдар", "Ильдарович", "Ильдаровна"), ("Фарход", "Фарходович", "Фарходовна"),
    ("Тимур", "Тимурович", "Тимуровна"), ("Анвар", "Анварович", "Анваровна"),
]  # fmt: skip
_TURKIC_FEMALE = [
    "Гульнара", "Дильноза", "Зульфия", "Лейла", "Наргиза", "Альфия", "Гузель", "Малика",
    "Феруза", "Камила",
]  # fmt: skip
_TURKIC_SURNAMES = [
    "Юсупов", "Каримов", "Мамедов", "Хасанов", "Абдуллаев", "Турсунов", "Галиев",
    "Сабиров", "Нуриев", "Масимов", "Исмаилов", "Хамитов",
]  # fmt: skip
_SLAVIC_GERMAN_MALE = [
    ("Пётр", "Петрович", "Петровна"), ("Виталий", "Витальевич", "Витальевна"),
    ("Роман", "Романович", "Романовна"), ("Богдан", "Богданович", "Богдановна"),
    ("Вальтер", "Вальтерович", "Вальтеровна"), ("Генрих", "Генрихович", "Генриховна"),
    ("Артур", "Артурович", "Артуровна"), ("Тарас", "Тарасович", "Тарасовна"),
]  # fmt: skip
_SLAVIC_GERMAN_FEMALE = [
    "Оксана", "Ирина", "Марина", "Эльвира", "Ирма", "Вера", "Лидия", "Кристина",
]  # fmt: skip
_SLAVIC_GERMAN_SURNAMES = [
    "Шевченко",
    "Бондаренко",
    "Коваленко",
    "Мельник",
    "Шульц",
    "Майер",
    "Вебер",
    "Шмидт",
    "Ткаченко",
    "Кравчук",
]  # fmt: skip  (not gendered: the female form equals the male one)
_KOREAN_MALE = [
    ("Виктор", "Викторович", "Викторовна"), ("Вячеслав", "Вячеславович", "Вячеславовна"),
    ("Эдуард", "Эдуардович", "Эдуардовна"), ("Станислав", "Станиславович", "Станиславовна"),
    ("Валерий", "Валерьевич", "Валерьевна"),
]  # fmt: skip
_KOREAN_FEMALE = ["Марина", "Светлана", "Алла", "Жанна", "Инна", "Элла"]
_KOREAN_SURNAMES = ["Ким", "Пак", "Цой", "Ли", "Тен", "Хван", "Югай", "Огай"]


# the gendered surname endings: men's, women's
_SURNAME_ENDINGS = (("ов", "ова"), ("ев", "ева"), ("ёв", "ёва"), ("ин", "ина"))


def feminine(surname: str) -> str:
    """The women's form of ``surname`` (Ахметов -> Ахметова; Ким stays Ким)."""
    for male, female in _SURNAME_ENDINGS:
        if surname.endswith(male):
            return surname[: -len(male)] + female
    return surname  # Шевченко, Шульц, Ким: the same for women


def masculine(surname: str) -> str:
    """The men's form of ``surname`` (Ахметова -> Ахметов; a men's form stays as it is)."""
    for male, female in _SURNAME_ENDINGS:
        if surname.endswith(female):
            return surname[: -len(female)] + male
    return surname


@dataclass(frozen=True)
class NameTables:
    """Flat Arrow string pools with per-group offsets, so names are picked by integer index."""

    first_m: pa.Array
    first_f: pa.Array
    patronymic_ru_m: pa.Array  # aligned with first_m: the patronymic a son of that man gets
    patronymic_ru_f: pa.Array
    patronymic_kk_m: pa.Array  # Кайратұлы
    patronymic_kk_f: pa.Array  # Кайратқызы
    surname_m: pa.Array
    surname_f: pa.Array
    # per group: (start, count) into the pools above
    first_m_span: np.ndarray
    first_f_span: np.ndarray
    surname_span: np.ndarray
    group_shares: np.ndarray


@lru_cache(maxsize=1)
def tables() -> NameTables:
    groups = [
        (_KAZAKH_MALE, _KAZAKH_FEMALE, _KAZAKH_SURNAMES),
        (_RUSSIAN_MALE, _RUSSIAN_FEMALE, _RUSSIAN_SURNAMES),
        (_TURKIC_MALE, _TURKIC_FEMALE, _TURKIC_SURNAMES),
        (_SLAVIC_GERMAN_MALE, _SLAVIC_GERMAN_FEMALE, _SLAVIC_GERMAN_SURNAMES),
        (_KOREAN_MALE, _KOREAN_FEMALE, _KOREAN_SURNAMES),
    ]
    first_m: list[str] = []
    pat_ru_m: list[str] = []
    pat_ru_f: list[str] = []
    first_f: list[str] = []
    surnames: list[str] = []
    spans: list[list[tuple[int, int]]] = [[], [], []]
    for male, female, family in groups:
        spans[0].append((len(first_m), len(male)))
        spans[1].append((len(first_f), len(female)))
        spans[2].append((len(surnames), len(family)))
        first_m += [m for m, _, _ in male]
        pat_ru_m += [pm for _, pm, _ in male]
        pat_ru_f += [pf for _, _, pf in male]
        first_f += female
        surnames += family
    return NameTables(
        first_m=pa.array(first_m),
        first_f=pa.array(first_f),
        patronymic_ru_m=pa.array(pat_ru_m),
        patronymic_ru_f=pa.array(pat_ru_f),
        patronymic_kk_m=pa.array([m + "ұлы" for m in first_m]),
        patronymic_kk_f=pa.array([m + "қызы" for m in first_m]),
        surname_m=pa.array(surnames),
        surname_f=pa.array([feminine(s) for s in surnames]),
        first_m_span=np.array(spans[0], dtype=np.int64),
        first_f_span=np.array(spans[1], dtype=np.int64),
        surname_span=np.array(spans[2], dtype=np.int64),
        group_shares=np.array([s for _, s in ETHNIC_GROUPS]) / sum(s for _, s in ETHNIC_GROUPS),
    )


def pick(span: np.ndarray, group: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index into a pool: a uniform draw ``u`` in [0, 1) within each row's group span."""
    start = span[group, 0]
    count = span[group, 1]
    return start + np.minimum((u * count).astype(np.int64), count - 1)


def mojibake(text: str, encoding: str | None) -> str:
    """UTF-8 bytes read as CP1251, as a system that assumed the wrong code page would store them.

    CP1251 has no character for byte 0x98 (the second byte of "И"); decoders put U+FFFD there,
    which a CP1251 file cannot hold, so there it becomes "?" as an encoder with replacement
    would write it.
    """
    garbled = text.encode("utf-8").decode("cp1251", errors="replace")
    if encoding == "cp1251":
        garbled = garbled.replace("\ufffd", "?")
    return garbled
