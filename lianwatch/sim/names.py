"""Name pools for the synthetic county (Xiaoshan district, Hangzhou).

Town centres are approximate WGS-84 positions inside the box
30.0–30.35 N, 120.1–120.5 E; everything else is invented.
"""

from __future__ import annotations

import random

COUNTY = "萧山区"

# (name, lat, lon) — town (镇) or sub-district (街道) centres, WGS-84.
TOWNS: list[tuple[str, float, float]] = [
    ("城厢街道", 30.1630, 120.2650),
    ("北干街道", 30.1800, 120.2750),
    ("蜀山街道", 30.1250, 120.2600),
    ("新塘街道", 30.1750, 120.3050),
    ("宁围街道", 30.2350, 120.2850),
    ("新街街道", 30.2100, 120.3300),
    ("闻堰街道", 30.1300, 120.1800),
    ("义桥镇", 30.0800, 120.2000),
    ("所前镇", 30.0700, 120.2900),
    ("衙前镇", 30.1700, 120.3600),
    ("瓜沥镇", 30.1900, 120.4400),
    ("益农镇", 30.2500, 120.4750),
    ("党湾镇", 30.2400, 120.4300),
    ("靖江街道", 30.2500, 120.3800),
    ("南阳街道", 30.3000, 120.4000),
    ("河庄街道", 30.3150, 120.4650),
    ("临浦镇", 30.0400, 120.2600),
    ("戴村镇", 30.0250, 120.1800),
    ("浦阳镇", 30.0300, 120.3200),
    ("进化镇", 30.0150, 120.3700),
]

# County bureaus whose compounds sit in the district seat (城厢/北干/蜀山).
BUREAUS: list[str] = [
    "区政府办", "交通运输局", "农业农村局", "住建局", "水利局", "城管局",
    "民政局", "自然资源局", "生态环境局", "卫健局", "教育局", "应急管理局",
    "市场监管局", "文旅局", "财政局", "发改局",
]

_V1 = "东西南北新永兴联群凤山湖沙塘桥港坞岭溪潭红光明华胜利民丰和安富长宏前后杨沈金潘黄石竹梅云龙江河"
_V2 = "裕桥山湖塘港坞岭溪浦埠庄园田丰兴华星光明安宁和平乐盛益旺泰隆源渡畈圩墩湾家"

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国新红文斌波宇浩凯俊峰辉鹏飞兰萍玲燕海林东亮志民金福荣根水土宝才德永春雪梅"

_CO_WORDS = "鑫盛宏达恒信华瑞丰泰通锦欣远博创誉诚腾振众利佳宇祥润新隆源鼎优立安顺捷晟卓"
_CO_KINDS = [
    ("建设工程有限公司", "engineering"),
    ("市政园林有限公司", "engineering"),
    ("水利建设有限公司", "engineering"),
    ("建材有限公司", "procurement"),
    ("农资经营部", "procurement"),
    ("办公用品商行", "office"),
    ("保洁服务有限公司", "services"),
    ("物业管理有限公司", "services"),
    ("绿化养护有限公司", "services"),
    ("劳务有限公司", "labor"),
    ("电器商行", "procurement"),
    ("农家乐", "reception"),
    ("酒店有限公司", "reception"),
    ("旅行社有限公司", "travel"),
]

STATION_BRANDS = ["中石化", "中石化", "中石油", "中石油", "浙江石油", "中海油", "壳牌"]

PROJECT_WORKS = [
    "道路硬化", "文化礼堂改造", "污水管网提升", "农田水利整治", "美丽乡村建设",
    "河道综合整治", "公厕改造", "路灯亮化", "老旧小区改造", "桥梁加固",
    "垃圾分类站点建设", "村级活动中心建设", "农村饮用水提升", "标准农田建设",
    "停车场建设", "游步道建设", "排涝泵站改造", "学校操场改造",
]

PURPOSES = {
    "labor": ["保洁工工资", "护林员工资", "河道巡查劳务", "临时用工工资", "绿化养护劳务"],
    "procurement": ["护栏油漆", "水泥黄沙", "办公电脑", "路灯配件", "化肥农药", "消防器材"],
    "subsidy": ["低保补助", "困难家庭补助", "老年人慰问金", "耕地保护补贴", "残疾人补助"],
    "services": ["保洁服务费", "绿化养护费", "物业服务费", "垃圾清运费", "设备维修费"],
    "engineering": ["道路修补", "沟渠清淤", "围墙维修", "文化礼堂修缮", "管网维修"],
    "office": ["办公用品", "打印耗材", "报刊订阅", "网络费"],
    "travel": ["差旅费报销", "外出学习交通费"],
    "reception": ["公务接待餐费", "会议用餐"],
    "other": ["其他支出"],
}

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_W = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def uscc(rng: random.Random, region: str = "330109") -> str:
    """A syntactically valid 18-character unified social credit code (GB 32100)."""
    body = "91" + region + "MA2" + "".join(rng.choice(_USCC_CHARS) for _ in range(6))
    s = sum(_USCC_CHARS.index(c) * w for c, w in zip(body, _USCC_W))
    check = (31 - s % 31) % 31
    return body + _USCC_CHARS[check]


def person_name(rng: random.Random) -> str:
    n = 1 if rng.random() < 0.35 else 2
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(n))


def village_names(rng: random.Random, n: int) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    tries = 0
    while len(out) < n:
        tries += 1
        mid = rng.choice(_V2) if tries < 30 * n + 100 else rng.choice(_V1) + rng.choice(_V2)
        name = rng.choice(_V1) + mid + "村"
        if name[0] != name[1] and name not in seen:
            seen.add(name)
            out.append(name)
    return out


def company_name(rng: random.Random, town: str, used: set[str]) -> tuple[str, str]:
    """(name, category) of an invented local company."""
    while True:
        kind, cat = rng.choice(_CO_KINDS)
        word = rng.choice(_CO_WORDS) + rng.choice(_CO_WORDS)
        prefix = "杭州萧山" if rng.random() < 0.6 else "杭州" + town[:2]
        name = prefix + word + kind
        if name not in used:
            used.add(name)
            return name, cat


_PLATE_CHARS = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def plate(rng: random.Random, used: set[str]) -> str:
    while True:
        p = "浙A·" + "".join(rng.choice("0123456789") for _ in range(4)) + rng.choice(_PLATE_CHARS[10:])
        if p not in used:
            used.add(p)
            return p


def phone(rng: random.Random) -> str:
    return rng.choice(["138", "139", "137", "158", "159", "188", "135"]) + "".join(
        rng.choice("0123456789") for _ in range(8)
    )
