"""Synthetic legacy catalogs: multilingual, valid by CATALOG.md's rules, deterministic for a seed.

Rows are made a chunk of whole albums at a time and bulk-loaded the fastest way each engine allows
(PostgreSQL COPY, MariaDB multi-row INSERT, SQLite executemany): parents first, one commit per chunk.
"""

from __future__ import annotations

import io
import itertools
import random
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from sqlalchemy import Connection, Engine, Table, func, inspect, select
from sqlalchemy import exc as sa_exc

from streams.catalog import legacy
from streams.catalog.dburl import dialect_kind, error_reason, make_engine, mask_password
from streams.errors import ConfigError, ServiceUnavailableError, TuneflowError

Mode = Literal["create", "append", "replace"]
Row = tuple[Any, ...]
_T = TypeVar("_T")

TABLE_ORDER = ("artist", "album", "album_artist", "genre", "track", "track_artist", "track_genre")
TRACKS_PER_ARTIST = 8
MYSQL_ROWS_PER_STATEMENT = 5000


@dataclass
class GenerationReport:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLE_ORDER, 0))
    seconds: float = 0.0

    @property
    def tracks_per_second(self) -> float:
        return self.counts["track"] / self.seconds if self.seconds > 0 else 0.0


def generate_catalog(
    url: str,
    tracks: int,
    *,
    mode: Mode = "create",
    seed: int = 42,
    chunk_size: int = 10_000,
    progress: Callable[[int], None] | None = None,
) -> GenerationReport:
    """Write `tracks` tracks (with their albums, artists, credits and genres) into the legacy tables at `url`.

    `create` refuses tables that already hold rows, `replace` drops and recreates them, `append` adds
    rows after the highest existing ids. `progress` gets the number of tracks committed per chunk.
    """
    if tracks < 1:
        raise ConfigError(f"the number of tracks must be at least 1, got {tracks}")
    if chunk_size < 1:
        raise ConfigError(f"the chunk size must be at least 1, got {chunk_size}")
    if mode not in ("create", "append", "replace"):
        raise ConfigError(f"unknown mode {mode!r}: use create, append or replace")
    where = mask_password(url)
    engine = make_engine(url)
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)  # a new SQLite file may be anywhere
    # The bulk loaders use the raw DBAPI connection, so its own exceptions arrive unwrapped.
    dbapi = engine.dialect.loaded_dbapi
    unreachable = (sa_exc.OperationalError, sa_exc.InterfaceError, dbapi.OperationalError,
                   dbapi.InterfaceError)
    conflicting = (sa_exc.IntegrityError, dbapi.IntegrityError)
    started = time.perf_counter()
    try:
        report = _generate(engine, where, tracks, mode, seed, chunk_size, progress)
    except unreachable as exc:
        raise ServiceUnavailableError(f"cannot use the database at {where}: {error_reason(exc, url)}") from exc
    except conflicting as exc:
        raise TuneflowError(
            f"the generated rows conflict with rows already in {where}: {error_reason(exc, url)} "
            "(use --mode replace to start over)"
        ) from exc
    finally:
        engine.dispose()
    report.seconds = time.perf_counter() - started
    return report


def _generate(
    engine: Engine,
    where: str,
    tracks: int,
    mode: Mode,
    seed: int,
    chunk_size: int,
    progress: Callable[[int], None] | None,
) -> GenerationReport:
    _prepare_schema(engine, where, mode)
    report = GenerationReport()
    genre_ids = _ensure_genres(engine, report)
    last_artist, last_album, last_track = _max_ids(engine)
    pool = _ArtistPool(seed, first_id=last_artist + 1, size=max(4, -(-tracks // TRACKS_PER_ARTIST)))
    tables = legacy.metadata.tables
    with _bulk_loader(engine) as loader:
        for rows in pool.generate(chunk_size):
            loader.insert(tables["artist"], rows)
            loader.commit()
            report.counts["artist"] += len(rows)
        next_album, next_track, remaining = last_album + 1, last_track + 1, tracks
        while remaining:
            chunk = _AlbumChunk(seed, pool, genre_ids, next_album, next_track)
            chunk.fill(limit=min(chunk_size, remaining), remaining=remaining)
            for name, rows in chunk.rows.items():
                loader.insert(tables[name], rows)
                report.counts[name] += len(rows)
            loader.commit()
            written = len(chunk.rows["track"])
            next_album, next_track, remaining = chunk.next_album, chunk.next_track, remaining - written
            if progress is not None:
                progress(written)
    return report


def _prepare_schema(engine: Engine, where: str, mode: Mode) -> None:
    if mode == "replace":
        legacy.drop_legacy_schema(engine)
    elif mode == "create":
        existing = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            filled = [
                name for name in TABLE_ORDER
                if name in existing
                and conn.execute(select(legacy.metadata.tables[name]).limit(1)).first() is not None
            ]
        if filled:
            raise ConfigError(
                f"the legacy tables in {where} already hold rows ({', '.join(filled)}): "
                "use --mode append to add to them or --mode replace to start over"
            )
    legacy.create_legacy_schema(engine)


def _max_ids(engine: Engine) -> tuple[int, int, int]:
    tables = legacy.metadata.tables

    def highest(conn: Connection, name: str) -> int:
        key = tables[name].c[f"{name}_id"]
        return int(conn.execute(select(func.coalesce(func.max(key), 0))).scalar_one())

    with engine.connect() as conn:
        return highest(conn, "artist"), highest(conn, "album"), highest(conn, "track")


def _ensure_genres(engine: Engine, report: GenerationReport) -> dict[str, int]:
    """The id of every generator genre, inserting the ones the table lacks after its highest id."""
    genre = legacy.metadata.tables["genre"]
    with engine.begin() as conn:
        ids = {row.name: row.genre_id for row in conn.execute(select(genre.c.genre_id, genre.c.name))}
        next_id = max(ids.values(), default=0) + 1
        missing = [name for name in GENRES if name not in ids]
        for offset, name in enumerate(missing):
            ids[name] = next_id + offset
        if missing:
            conn.execute(genre.insert(), [{"genre_id": ids[name], "name": name} for name in missing])
    report.counts["genre"] = len(missing)
    return ids


# --- Vocabulary -----------------------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    """NFC, trimmed entries of a `|`-separated list, so every generated text is already normalized."""
    return tuple(unicodedata.normalize("NFC", " ".join(word.split())) for word in text.split("|"))


@dataclass(frozen=True)
class _Script:
    weight: int
    countries: tuple[str, ...]
    given: tuple[str, ...]
    family: tuple[str, ...]
    bands: tuple[str, ...]
    words: tuple[str, ...]
    genres: tuple[str, ...]
    family_first: bool = False
    joiner: str = " "
    max_words: int = 4


SCRIPTS: tuple[_Script, ...] = (
    _Script(  # English
        24, _words("US|GB|CA|AU|IE|NZ"),
        _words("Olivia|James|Taylor|Billie|Harry|Ava|Noah|Lana|Ethan|Grace|Jack|Sophie|Leo|Ruby|Sam"),
        _words("Smith|Johnson|Walker|Carter|Bennett|Hughes|Price|Morgan|Reed|Hayes|Brooks|Foster|Ward"),
        _words("The Midnight|Arctic Lights|Velvet Echo|Paper Kites|Neon Harbor|Silver Lakes|Glass Animals"),
        _words("Love|Night|Drive|Moon|Golden|Hour|Midnight|City|Lights|Blue|Summer|Heart|Dreams|Fire|Rain|"
               "Stay|Forever|Wild|Electric|Paradise|Echo|Shadow|Ocean|Gravity|Neon|Home|Run|Stars"),
        _words("Pop|Rock|Hip-Hop|R&B|Soul|Country|Indie|Electronic|Metal|Punk|Folk|Blues|Jazz"),
    ),
    _Script(  # Latin script with accents: Romance, Germanic, Nordic, Slavic
        22, _words("FR|ES|DE|SE|NO|DK|PT|BR|MX|AR|PL|CZ|IS|IT|FI"),
        _words("José|María|Zoë|Chloé|Björn|Søren|Ángel|François|Łukasz|Agnès|Joël|Inês|João|Renée|Håkon|"
               "Örjan|Íñigo|Małgorzata|Jiří|Anaïs"),
        _words("García|Müller|Núñez|Lefèvre|Østergaard|Gonçalves|Šimek|Kowalczyk|Sánchez|Dubois|Björklund|"
               "Ibáñez|Mäkelä|Peña|Jørgensen|Dvořák|Gómez|Çelik|Lindqvist|Fernández"),
        _words("Los Ángeles Azules|Les Étoiles|Die Ärzte|Sigur Rós|Café Tacvba|Mötley Crüe|Los Fabulosos"),
        _words("Corazón|Été|Noche|Mañana|Canción|Lumière|Sehnsucht|Saudade|Amor|Cœur|Rêve|Mélodie|Días|"
               "Última|Für|Immer|Sommar|Ljus|Żywioł|Déjà|Vu|Añoranza|Ojos|Mar|Fiesta|Tú|Señal|Verão|Coração"),
        _words("Latin|Reggaeton|Pop|Chanson|House|Techno|Classical|Jazz|Folk|Electronic"),
    ),
    _Script(  # Korean
        16, _words("KR"),
        _words("민지|서현|우진|준호|하윤|지수|은비|영호|진영|예린|아린|연우|태민|성훈|수빈|채원"),
        _words("김|이|박|최|정|강|조|윤|장|임|한|오|서|신|권"),
        _words("소녀시대|방탄소년단|블랙핑크|빅뱅|트와이스|레드벨벳|세븐틴|뉴진스|아이브|잔나비|혁오|자우림"),
        _words("사랑|밤편지|봄날|너의|의미|그대|눈물|하늘|별|바람|꿈|우리|이별|좋은|날|여름|밤|시간|기억|첫눈"),
        _words("K-Pop|Ballad|Trot|Hip-Hop|R&B|Indie"),
        family_first=True,
    ),
    _Script(  # Japanese
        12, _words("JP"),
        _words("ヒカル|玄師|林檎|由実|さくら|翔|陽菜|蓮|美咲|大翔|結衣|葵|悠真|真琴"),
        _words("佐藤|鈴木|高橋|田中|渡辺|伊藤|山本|中村|小林|宇多田|米津|椎名|松任谷"),
        _words("ヨルシカ|スピッツ|サカナクション|ラッドウィンプス|いきものがかり|ポルノグラフィティ|ずっと真夜中でいいのに。"),
        _words("夜に駆ける|春よ、来い|桜|花火|夢|東京|恋|君|星|雨|月|さよなら|ありがとう|青|未来|心|声|空|光|風"),
        _words("J-Pop|Enka|Rock|Electronic|Ambient|Jazz"),
        family_first=True, joiner="", max_words=2,
    ),
    _Script(  # Chinese
        9, _words("CN|TW|HK|SG"),
        _words("杰伦|菲|俊杰|依林|紫棋|燕姿|宇春|学友|德华|靖|伟|芳|晓|婷|浩然|子豪"),
        _words("周|王|林|陈|张|李|刘|黄|蔡|邓|孙|吴|郑|谢"),
        _words("五月天|苏打绿|飞儿乐队|草东没有派对|告五人|逃跑计划"),
        _words("晴天|稻香|后来|月亮|代表|我的心|爱|梦|夜曲|青花瓷|告白|气球|时间|城市|星空|海|风|雨|光年|远方"),
        _words("Mandopop|Cantopop|Ballad|Pop|Folk"),
        family_first=True, joiner="", max_words=2,
    ),
    _Script(  # Cyrillic
        7, _words("RU|UA|BY|KZ|BG|RS"),
        _words("Алексей|Мария|Дмитрий|Анна|Сергей|Елена|Иван|Ольга|Николай|Татьяна|Земфира|Полина|Виктор|Юлия"),
        _words("Иванов|Смирнова|Кузнецов|Попова|Соколов|Лебедева|Цой|Гагарина|Меладзе|Пугачёва|Шевчук|Билан"),
        _words("Кино|Мумий Тролль|Сплин|Ночные Снайперы|Би-2|Звери|Мельница|Ленинград|Аквариум"),
        _words("Бессонница|Палитра|Через|Звезда|Группа|крови|Лето|Кукушка|Любовь|Ночь|Город|Море|Весна|"
               "Дорога|Небо|Сердце|Река|Ветер|Осень|Тишина"),
        _words("Pop|Rock|Folk|Electronic|Classical|Punk"),
    ),
    _Script(  # Greek
        4, _words("GR|CY"),
        _words("Νίκος|Ελένη|Γιώργος|Μαρία|Δημήτρης|Κατερίνα|Γιάννης|Άννα|Σάκης|Δέσποινα|Μανώλης|Χάρις"),
        _words("Παπαδόπουλος|Βανδή|Ρουβάς|Αλεξίου|Χατζιδάκις|Θεοδωράκης|Μητροπάνος|Πάριος|Αρβανιτάκη|Νταλάρας"),
        _words("Πυξ Λαξ|Υπόγεια Ρεύματα|Κίτρινα Ποδήλατα|Μπλε|Τρύπες|Διάφανα Κρίνα"),
        _words("Αγάπη|Θάλασσα|Νύχτα|Καλοκαίρι|Φεγγάρι|Ουρανός|Όνειρο|Καρδιά|Αστέρι|Δρόμος|Ήλιος|Βροχή|Ζωή|"
               "Χρόνος|Φως|Σιωπή"),
        _words("Laïko|Pop|Folk|Rock"),
    ),
    _Script(  # Arabic
        6, _words("EG|LB|SA|AE|MA|IQ"),
        _words("محمد|فيروز|عمرو|نانسي|كاظم|إليسا|تامر|شيرين|راشد|وائل|هيفاء|ماجدة"),
        _words("دياب|عجرم|الساهر|حسني|عبد الوهاب|الماجد|كفوري|وهبي|الرومي|منير"),
        _words("مشروع ليلى|كايروكي|أوتوستراد|جدل|الأطرش"),
        _words("حبيبي|يا|ليل|قلبي|أنت|عمري|نور|سلام|بحر|قمر|حب|أمل|شمس|وطن|حلم|سهر"),
        _words("Tarab|Pop|Folk|Electronic"),
    ),
)
GENRES: tuple[str, ...] = _words(
    "Pop|Rock|Hip-Hop|R&B|Soul|Jazz|Blues|Classical|Electronic|House|Techno|Ambient|Folk|Country|Reggae|"
    "Latin|Reggaeton|Metal|Punk|Indie|K-Pop|J-Pop|Mandopop|Cantopop|Ballad|Trot|Enka|Chanson|Laïko|Tarab"
)
LABELS = _words(
    "EDAM Entertainment|HYBE Labels|SM Entertainment|JYP Entertainment|Kakao Entertainment|Sony Music Japan|"
    "Avex Trax|ビクターエンタテインメント|Warner Music|Universal Music|Columbia|Atlantic|XL Recordings|"
    "Sub Pop|Domino|Rough Trade|4AD|Мелодия|Союз Мьюзик|Rotana|Minos EMI|滾石唱片|華納音樂|Discos Fuentes|"
    "Éditions Barclay|Deutsche Grammophon|Because Music|Stone Music"
)
_COMPILATION_TITLES = _words(
    "{genre} Hits {year}|The Best of {genre} Vol. {n}|Now That's What I Call {genre} {n}|{genre} Classics|"
    "Ultimate {genre} Collection"
)
_SUFFIXES = _words("(Live)|(Acoustic)|(Remix)|(Instrumental)|(Remastered)")
_SCRIPT_INDEXES = range(len(SCRIPTS))
_SCRIPT_CUM_WEIGHTS = tuple(itertools.accumulate(script.weight for script in SCRIPTS))
_ENGLISH = SCRIPTS[0]

_EPOCH = datetime(1970, 1, 1)
_UPDATED_FROM = int((datetime(2019, 1, 1) - _EPOCH).total_seconds()) * 1_000_000
_UPDATED_SPAN = 6 * 365 * 86_400 * 1_000_000
_TRACK_UPDATE_SPREAD = 30 * 86_400 * 1_000_000
_RELEASED_UNTIL = date(2024, 12, 31).toordinal()
_RELEASED_SPAN = _RELEASED_UNTIL - date(1960, 1, 1).toordinal()
_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _timestamp(micros: int) -> str:
    """Naive UTC with microseconds, in the text form every engine and SQLAlchemy's SQLite dialect read."""
    return (_EPOCH + timedelta(microseconds=micros)).isoformat(" ", "microseconds")


def isrc_for(country: str, track_id: int) -> str:
    """An ISRC unique per track id below 466 billion: the id's low 7 digits, a registrant from the rest."""
    high, low = divmod(track_id, 10_000_000)
    registrant = (high + low * 7919) % 46_656  # a bijection of `high` for each `low`
    code = _BASE36[registrant // 1296] + _BASE36[registrant // 36 % 36] + _BASE36[registrant % 36]
    return f"{country}{code}{low:07d}"


# --- Rows -----------------------------------------------------------------------------------------------


class _ArtistPool:
    """The artists a run credits; each remembers its script and the country its ISRCs carry."""

    def __init__(self, seed: int, first_id: int, size: int) -> None:
        self.seed, self.first_id, self.size = seed, first_id, size
        self.script = bytearray(size)
        self.isrc_country: list[str] = [""] * size

    def generate(self, chunk_size: int) -> Iterator[list[Row]]:
        for start in range(0, self.size, chunk_size):
            rng = random.Random(f"{self.seed}/artist/{self.first_id + start}")
            r = rng.random
            rows: list[Row] = []
            for index in range(start, min(start + chunk_size, self.size)):
                script_index = rng.choices(_SCRIPT_INDEXES, cum_weights=_SCRIPT_CUM_WEIGHTS)[0]
                script = SCRIPTS[script_index]
                country = _pick(script.countries, r())
                self.script[index] = script_index
                self.isrc_country[index] = country
                rows.append((
                    self.first_id + index,
                    _artist_name(script, r),
                    None if r() < 0.12 else country,
                    None if r() < 0.2 else 1950 + int(75 * r() ** 0.6),
                    _timestamp(_UPDATED_FROM + int(r() * _UPDATED_SPAN)),
                ))
            yield rows

    def pick(self, r: Callable[[], float]) -> int:
        """An artist id, popular ones (low offsets) more often."""
        return self.first_id + int(self.size * r() ** 1.6)

    def script_of(self, artist_id: int) -> _Script:
        return SCRIPTS[self.script[artist_id - self.first_id]]


class _AlbumChunk:
    """The rows of a run of whole albums, by table in load order (parents first)."""

    def __init__(self, seed: int, pool: _ArtistPool, genre_ids: dict[str, int], album_id: int, track_id: int):
        self.rng = random.Random(f"{seed}/album/{album_id}/{track_id}")
        self.pool = pool
        self.genre_ids = tuple(genre_ids[name] for name in GENRES)
        self.genre_names = {genre_ids[name]: name for name in GENRES}
        self.script_genres = [tuple(genre_ids[name] for name in script.genres) for script in SCRIPTS]
        self.next_album, self.next_track = album_id, track_id
        self.rows: dict[str, list[Row]] = {name: [] for name in
                                           ("album", "album_artist", "track", "track_artist", "track_genre")}

    def fill(self, limit: int, remaining: int) -> None:
        """Albums until the next would pass `limit` tracks; the catalog's last album stops at `remaining`."""
        produced = 0
        while produced < limit:
            kind, size, discs = _album_shape(self.rng.random)
            size = min(size, remaining - produced)
            if produced and produced + size > limit:
                return
            self._album(kind, size, min(discs, size))
            produced += size

    def _album(self, kind: str, size: int, discs: int) -> None:
        r, pool = self.rng.random, self.pool
        album_id = self.next_album
        self.next_album += 1
        compilation = kind == "COMPILATION"
        mains: tuple[int, ...] = ()
        if compilation:
            script_index = self.rng.choices(_SCRIPT_INDEXES, cum_weights=_SCRIPT_CUM_WEIGHTS)[0]
        else:
            mains = (pool.pick(r),)
            if r() < 0.08 and (second := pool.pick(r)) != mains[0]:
                mains += (second,)
            script_index = pool.script[mains[0] - pool.first_id]
            self.rows["album_artist"].extend((album_id, artist, ord_) for ord_, artist in enumerate(mains, 1))
        writers = self._writers(mains) if mains else ((), (), ())
        genres = self._album_genres(script_index)
        updated = _UPDATED_FROM + int(r() * _UPDATED_SPAN)
        release = None if r() < 0.04 else date.fromordinal(_RELEASED_UNTIL - int(_RELEASED_SPAN * r() ** 2))
        per_disc = -(-size // discs)
        first_title = ""
        for index in range(size):
            if compilation:
                mains = (pool.pick(r),)
                writers = self._writers(mains)
            title = self._track(album_id, index // per_disc + 1, index % per_disc + 1, mains, writers, genres,
                                updated)
            first_title = first_title or title
        if kind == "SINGLE":
            album_title = first_title
        elif compilation:
            album_title = _pick(_COMPILATION_TITLES, r()).format(
                genre=self.genre_names[genres[0]], year=1990 + int(35 * r()), n=1 + int(40 * r()))
        else:
            album_title = _title(SCRIPTS[script_index], r, max_words=3)
        self.rows["album"].append((
            album_id, album_title, kind, None if release is None else release.isoformat(),
            None if r() < 0.15 else _pick(LABELS, r()), _timestamp(updated),
        ))

    def _track(self, album_id: int, disc_no: int, track_no: int, mains: tuple[int, ...],
               writers: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]], genres: tuple[int, ...],
               album_updated: int) -> str:
        r, pool = self.rng.random, self.pool
        track_id = self.next_track
        self.next_track += 1
        script = pool.script_of(mains[0])
        title = _title(_ENGLISH if r() < 0.15 else script, r, script.max_words)
        if r() < 0.06:
            title = f"{title} {_pick(_SUFFIXES, r())}"
        duration = _duration(self.rng)
        isrc = None if r() < 0.08 else isrc_for(pool.isrc_country[mains[0] - pool.first_id], track_id)
        self.rows["track"].append((track_id, album_id, title, disc_no, track_no, duration, isrc,
                                   1 if r() < 0.08 else 0,
                                   _timestamp(album_updated + int(r() * _TRACK_UPDATE_SPREAD))))
        credits = self.rows["track_artist"]
        credits.extend((track_id, artist, "MAIN", ord_) for ord_, artist in enumerate(mains, 1))
        if r() < 0.15:
            featured = _distinct((pool.pick(r) for _ in range(1 + (r() < 0.2))), exclude=mains)
            credits.extend((track_id, artist, "FEATURED", ord_) for ord_, artist in enumerate(featured, 1))
        composers, lyricists, arrangers = writers
        for role, candidates, chance in (("COMPOSER", composers, 0.7), ("LYRICIST", lyricists, 0.5),
                                         ("ARRANGER", arrangers, 0.25)):
            if r() < chance:
                chosen = candidates[: 1 + int(r() * len(candidates))]
                credits.extend((track_id, artist, role, ord_) for ord_, artist in enumerate(chosen, 1))
        x = r()
        count = 0 if x < 0.08 else 1 if x < 0.65 else 2 if x < 0.92 else 3
        if count:
            candidates = (*genres, *(_pick(self.genre_ids, r()) for _ in range(count)))
            picked = _distinct(candidates, exclude=())[:count]
            self.rows["track_genre"].extend((track_id, genre_id) for genre_id in picked)
        return title

    def _writers(self, mains: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Composers, lyricists and arrangers of one album: a small team reused across its tracks."""
        r, pick = self.rng.random, self.pool.pick
        songwriter = mains[:1] if mains and r() < 0.3 else ()
        composers = _distinct((*songwriter, *(pick(r) for _ in range(1 + int(r() * 2)))), exclude=())
        lyricists = _distinct((pick(r) for _ in range(1 + int(r() * 2))), exclude=())
        return composers, lyricists, (pick(r),)

    def _album_genres(self, script_index: int) -> tuple[int, ...]:
        r, preferred = self.rng.random, self.script_genres[script_index]
        return _distinct((_pick(preferred, r()) for _ in range(1 + (r() < 0.3))), exclude=())


def _album_shape(r: Callable[[], float]) -> tuple[str, int, int]:
    """Album type, track count and disc count; about ten tracks per album on average."""
    x = r()
    if x < 0.25:
        return "SINGLE", 1 + int(r() * 3), 1
    if x < 0.40:
        return "EP", 4 + int(r() * 4), 1
    if x < 0.50:
        return "COMPILATION", 12 + int(r() * 13), 1
    if r() < 0.07:
        discs = 2 + int(r() * 2)
        return "ALBUM", discs * (8 + int(r() * 7)), discs
    return "ALBUM", 8 + int(r() * 9), 1


def _duration(rng: random.Random) -> int | None:
    x = rng.random()
    if x < 0.03:
        return None
    if x < 0.04:  # long-form: suites, DJ mixes, audiobooks
        return 600_000 + int(3_000_000 * rng.random())
    return max(30_000, min(900_000, int(rng.gauss(215_000, 55_000))))


def _artist_name(script: _Script, r: Callable[[], float]) -> str:
    if r() < 0.25:
        return _pick(script.bands, r())
    given, family = _pick(script.given, r()), _pick(script.family, r())
    return f"{family}{given}" if script.family_first else f"{given} {family}"


def _title(script: _Script, r: Callable[[], float], max_words: int) -> str:
    words = script.words
    return script.joiner.join(dict.fromkeys(_pick(words, r()) for _ in range(1 + int(r() * max_words))))


def _pick(options: Sequence[_T], x: float) -> _T:
    return options[int(x * len(options))]


def _distinct(values: Iterable[int], exclude: tuple[int, ...]) -> tuple[int, ...]:
    seen: list[int] = []
    for value in values:
        if value not in seen and value not in exclude:
            seen.append(value)
    return tuple(seen)


# --- Bulk loading ---------------------------------------------------------------------------------------


class _Loader(Protocol):
    def insert(self, table: Table, rows: Sequence[Row]) -> None: ...

    def commit(self) -> None: ...

    def finish(self) -> None: ...


@contextmanager
def _bulk_loader(engine: Engine) -> Iterator[_Loader]:
    """A loader on one raw DBAPI connection, the fastest path each engine offers."""
    kind = dialect_kind(engine)
    raw = engine.raw_connection()
    loader: _Loader
    if kind == "postgresql":
        loader = _PostgresCopy(raw)
    elif kind == "mysql":
        loader = _MySqlInsert(raw)
    else:
        loader = _SqliteInsert(raw)
    try:
        yield loader
        loader.finish()
    except BaseException:
        # Never hand a half-loaded session (or one with MariaDB's checks off) back to the pool.
        raw.invalidate()
        raise
    finally:
        raw.close()


class _PostgresCopy:
    _ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._loaded: set[str] = set()

    def insert(self, table: Table, rows: Sequence[Row]) -> None:
        if not rows:
            return
        escapes = self._ESCAPES
        lines = [
            "\t".join([
                "\\N" if value is None else value.translate(escapes) if isinstance(value, str) else str(value)
                for value in row
            ])
            for row in rows
        ]
        lines.append("")
        columns = ", ".join(column.name for column in table.columns)
        with closing(self._raw.cursor()) as cursor:
            cursor.copy_expert(f"COPY {table.name} ({columns}) FROM STDIN", io.StringIO("\n".join(lines)))
        self._loaded.add(table.name)

    def commit(self) -> None:
        self._raw.commit()

    def finish(self) -> None:
        """Fresh planner statistics, so the first backfill queries do not plan against empty tables."""
        if not self._loaded:
            return
        with closing(self._raw.cursor()) as cursor:
            for name in sorted(self._loaded):
                cursor.execute(f"ANALYZE {name}")
            self._raw.commit()
        self._loaded.clear()


class _MySqlInsert:
    """PyMySQL rewrites executemany of INSERT … VALUES into multi-row statements (bounded in bytes)."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._checks_off = False

    def insert(self, table: Table, rows: Sequence[Row]) -> None:
        if not rows:
            return
        with closing(self._raw.cursor()) as cursor:
            if not self._checks_off:
                cursor.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
                self._checks_off = True
            columns = ", ".join(f"`{column.name}`" for column in table.columns)
            marks = ", ".join(["%s"] * len(table.columns))
            statement = f"INSERT INTO `{table.name}` ({columns}) VALUES ({marks})"
            for start in range(0, len(rows), MYSQL_ROWS_PER_STATEMENT):
                cursor.executemany(statement, rows[start : start + MYSQL_ROWS_PER_STATEMENT])

    def commit(self) -> None:
        self._raw.commit()

    def finish(self) -> None:
        if not self._checks_off:
            return
        with closing(self._raw.cursor()) as cursor:
            cursor.execute("SET SESSION foreign_key_checks = 1, unique_checks = 1")
        self._checks_off = False


class _SqliteInsert:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def insert(self, table: Table, rows: Sequence[Row]) -> None:
        if not rows:
            return
        columns = ", ".join(column.name for column in table.columns)
        marks = ", ".join(["?"] * len(table.columns))
        with closing(self._raw.cursor()) as cursor:
            cursor.executemany(f"INSERT INTO {table.name} ({columns}) VALUES ({marks})", rows)

    def commit(self) -> None:
        self._raw.commit()

    def finish(self) -> None:
        pass
